"""``e3d evaluate``: clip and video accuracy of a checkpoint, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from e3d.cli import main
from search.train import load_checkpoint
from tests.conftest import torch_threads
from tests.e3d.fixtures import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    argv = [
        "train",
        "mobilenet",
        "--width-mult",
        "0.25",
        "--format",
        "digits",
        "--cache-dir",
        str(root / "cache"),
        "--out",
        str(root / "run"),
    ]
    argv += ["--sample-duration", "8", "--sample-size", "32", "--num-samples", "16", "--epochs", "1", "--batch-size", "8", "--quiet"]
    with torch_threads(1):
        assert main(argv) == 0
    return root


def test_prints_clip_and_video_accuracy_on_the_test_split(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    code, out, err = run(capsys, "evaluate", str(checkpoint / "run"), "--quiet")
    assert code == 0, err
    assert "digits/test: 600 clips of 300 videos" in out  # every non-overlapping window (2 per 16-frame video)
    assert "clips    top1" in out and "top5" in out and "videos   top1" in out
    code, out, _ = run(capsys, "evaluate", str(checkpoint / "run" / "last.pt"), "--json", "--quiet", "--split", "val")
    m = json.loads(out)
    assert code == 0 and m["clips"] == m["videos"] == 300 and m["top1"] == m["video_top1"]  # one centre clip per video
    assert 0 <= m["top1"] <= m["top5"] <= 100


def test_the_train_split_is_scored_on_centre_clips_not_augmented_ones(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.train

    opened = []
    evaluate = search.train.evaluate

    def spy(model: Any, data: Any, **kw: Any) -> dict[str, float]:
        opened.append(data)
        return evaluate(model, data, **kw)

    monkeypatch.setattr(search.train, "evaluate", spy)
    code, out, err = run(capsys, "evaluate", str(checkpoint / "run"), "--split", "train", "--quiet")
    assert code == 0, err
    assert "digits/train: 16 clips of 16 videos, 10 classes, center 8x" in out  # was "random": a random window of each
    (data,) = opened
    assert not data.transform.train and not data.transform.flip  # was the multi-scale random crop of training


def test_a_proxy_option_given_wins_over_the_checkpoints(capsys: pytest.CaptureFixture[str], checkpoint: Path) -> None:
    losses = []
    for more in ([], ["--proxy-noise", "0.5"]):  # the second read the stored noise too: the same videos, the same loss
        code, out, err = run(capsys, "evaluate", str(checkpoint / "run"), "--split", "val", "--json", "--quiet", *more)
        assert code == 0, err
        losses.append(json.loads(out)["loss"])
    assert losses[0] != losses[1]


def test_class_count_mismatch_and_bad_checkpoints(capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "evaluate", str(checkpoint / "run"), "--format", "digits", "--digit-direction", "--quiet")
    assert code == 2 and "the checkpoint's model has 10 classes but digits/test has 40" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "evaluate", str(checkpoint / "run"), "--format", "motion", "--quiet")
    assert code == 2 and "trained on other classes" in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "none.pt"))
    assert code == 2 and "no such checkpoint file" in err
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    code, _, err = run(capsys, "evaluate", str(tmp_path / "bad.pt"))
    assert code == 2 and "bad.pt: not a readable PyTorch checkpoint" in err and len(err.strip().splitlines()) == 1


def test_files_that_are_no_run_checkpoint_say_what_evaluate_reads(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path
) -> None:
    accepted = "an e3d checkpoint (the last.pt that e3d train writes in its run folder, or that folder)"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "script.pt"))
    code, _, err = run(capsys, "evaluate", str(tmp_path / "script.pt"))
    assert code == 2 and f"script.pt is a TorchScript model, not a checkpoint: give {accepted}" in err, err  # was "give a file of
    # torch.save(model.state_dict())", which evaluate refuses too:
    torch.save(load_checkpoint(checkpoint / "run")["model"], tmp_path / "weights.pt")
    code, _, err = run(capsys, "evaluate", str(tmp_path / "weights.pt"))
    assert code == 2 and f"weights.pt is not {accepted}; it holds bare weights" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda s: s.pop("model"), "field 'model' must be a dict of tensors (a state_dict); it is missing"),
        (lambda s: s.update(model=[1, 2]), "field 'model' must be a dict of tensors (a state_dict); it is a list"),
        (lambda s: s.update(meta="digits"), "field 'meta' must be a dict; it is 'digits'"),
        (lambda s: s.update(history={"epoch": 1}), "field 'history' must be a list; it is a dict"),
        (lambda s: s["meta"]["proxy_options"].update(bogus=1), "meta field 'proxy_options' has unknown entries: bogus"),
        (lambda s: s["meta"].update(frame_step="2"), "meta field 'frame_step' must be an integer; it is '2'"),
        (lambda s: s.update(spec={"clip": [8, 32, 32]}), "field 'spec' is not a valid spec"),
        (lambda s: s["model"]["head.fc.weight"].fill_(math.nan), "weight head.fc.weight is not finite"),  # was "top1 10%, loss nan"
    ],
    ids=["no-model", "model-list", "meta-string", "history-dict", "proxy-options", "frame-step", "spec", "nan-weights"],
)
def test_a_hand_edited_checkpoint_is_one_line_naming_the_field(
    capsys: pytest.CaptureFixture[str], checkpoint: Path, tmp_path: Path, edit: Any, words: str
) -> None:
    state = load_checkpoint(checkpoint / "run")
    edit(state)
    torch.save(state, tmp_path / "edited.pt")
    code, _, err = run(capsys, "evaluate", str(tmp_path / "edited.pt"), "--quiet")  # were KeyError, TypeError, AttributeError
    assert code == 2 and f"edited.pt: {words}" in err and len(err.strip().splitlines()) == 1, err


def test_test_split_videos_whose_frames_cannot_be_counted_are_reported_skipped(tmp_path: Path) -> None:
    from search.data import DataWarning, open_dataset
    from search.train import evaluate
    from tests.search.video_fixtures import level_frames, write_video

    for split in ("train", "val", "test"):
        for c in ("a", "b"):
            write_video(tmp_path / "d" / split / c / "v.mp4", level_frames(8, 16, 16))
    (tmp_path / "d" / "test" / "b" / "empty.mp4").write_bytes(b"")
    with pytest.warns(DataWarning, match="empty.mp4: empty file"):
        data = open_dataset(tmp_path / "d", split="test", clip=(8, 16, 16), cache_dir=tmp_path / "cache", progress=False)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2))
    m = evaluate(model, data, batch_size=4)
    assert m["videos"] == 2 and m["skipped"] == 1  # was 0: the video was left out of the report
