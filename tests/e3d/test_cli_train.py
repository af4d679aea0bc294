"""``e3d train``: a run on a proxy task, resume, spec files, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import space
from search.train import load_checkpoint, save_checkpoint
from tests.e3d.fixtures import run
from tests.search.video_fixtures import level_frames, write_frames, write_video

TINY = ["--sample-duration", "8", "--sample-size", "32", "--num-samples", "16", "--batch-size", "8", "--quiet", "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_mobilenet(tmp_path: Path, out: Path) -> list[str]:
    """``e3d train`` of MobileNet 0.25x on a few clips of the motion task (cached under ``tmp_path``) into ``out``."""
    cache = ["--cache-dir", str(tmp_path / "c")]
    return ["train", "mobilenet", "--width-mult", "0.25", "--format", "motion", *cache, "--out", str(out), *TINY]


def test_train_a_preset_on_a_proxy_task_then_resume(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = tiny_mobilenet(tmp_path, out)
    code, stdout, err = run(capsys, *argv, "--epochs", "1")
    assert code == 0, err
    assert "epoch 1/1" in stdout and "val loss" in stdout and "top1" in stdout and "clips/s" in stdout
    state = load_checkpoint(out)
    assert state["epoch"] == 1 and state["meta"]["format"] == "motion" and len(state["class_names"]) == 10
    assert space.NetSpec.from_dict(state["spec"]).clip == (8, 32, 32)

    code, _, err = run(capsys, *argv, "--epochs", "2")
    assert code == 2 and "already holds a checkpoint; pass --resume" in err and len(err.strip().splitlines()) == 1
    for other, words in [
        (["--schedule", "cosine"], "other settings: schedule 'step' (now 'cosine')"),  # was KeyError: 'lr_lambdas'
        (
            ["--sample-size", "40", "--frame-step", "3"],
            "clip [8, 32, 32] (now [8, 40, 40]); and it was trained with other settings: frame_step 2 (now 3)",
        ),
        (["--crop", "corner"], "other settings: crop 'random' (now 'corner')"),  # was accepted: the run changed its crops
    ]:
        code, _, err = run(capsys, *argv, "--epochs", "2", "--resume", *other)  # the last option given wins
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    code, stdout, err = run(capsys, *argv, "--epochs", "2", "--resume", "--pretrained", str(out / "last.pt"))
    assert code == 2 and "--pretrained does not go with --resume" in err and len(err.strip().splitlines()) == 1, err
    assert "loaded" not in stdout  # was: loaded, then silently replaced by the resumed checkpoint's weights
    code, stdout, err = run(capsys, *argv, "--epochs", "2", "--resume", "--threads", "2")
    assert code == 0, err
    assert "resuming" in stdout and "epoch 2/2" in stdout and "epoch 1/2" not in stdout
    assert "run as   precision fp32 eager on cpu, 2 threads: from the checkpoint (" in stdout  # was the stored dict, 1 thread
    assert load_checkpoint(out)["epoch"] == 2
    # the 1-epoch run's cut after epoch 1 is restored; a 2-epoch run cuts after epochs 1 and 2 (was: no word of it)
    note = "note     --epochs 2, not the checkpoint's 1: the lr keeps the checkpoint's cuts (after epoch 1), not those of 2 epochs"
    assert note in stdout and "(after epochs 1 and 2): the run will not match an uninterrupted one of 2 epochs" in stdout
    code, stdout, err = run(capsys, *argv, "--epochs", "1", "--resume")
    assert code == 2 and "has done 2 epochs already: resuming it for 1 would train none" in err, err  # was "done 2 epochs"


def test_resuming_a_damaged_checkpoint_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = tiny_mobilenet(tmp_path, out)
    code, _, err = run(capsys, *argv, "--epochs", "1")
    assert code == 0, err
    good = load_checkpoint(out)
    key = next(iter(good["model"]))
    for state, words in [
        ({**good, "epoch": -1}, "field 'epoch' must be a non-negative integer; it is -1"),  # was numpy's ValueError traceback
        ({**good, "model": {k: v for k, v in good["model"].items() if k != key}}, f"does not fit this model: missing key {key}"),
    ]:
        save_checkpoint(out / "last.pt", state)
        code, _, err = run(capsys, *argv, "--epochs", "2", "--resume")
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_train_a_spec_file_and_its_class_count(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = space.paper_spec("shufflenetv2", width_mult=0.25, num_classes=7, sample_size=32, sample_duration=8)
    spec.save(tmp_path / "net.json")
    common = ["--format", "digits", "--cache-dir", str(tmp_path / "c"), "--epochs", "1", *TINY[4:]]
    code, _, err = run(capsys, "train", str(tmp_path / "net.json"), "--out", str(tmp_path / "a"), *common)
    assert code == 2 and "net.json has 7 classes but the dataset has 10; pass --adapt-head" in err
    assert len(err.strip().splitlines()) == 1
    code, stdout, err = run(capsys, "train", str(tmp_path / "net.json"), "--adapt-head", "--out", str(tmp_path / "a"), *common)
    assert code == 0, err
    assert "clip8x32x32" in stdout  # the spec's clip decides the data's clip


def test_a_net_that_cannot_train_at_the_clip_and_batch_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from space.sgs import with_sgs

    with_sgs(space.paper_spec("mobilenet", width_mult=0.5, num_classes=10), 0).save(tmp_path / "sgs.json")
    common = ["--format", "motion", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--epochs", "1", "--quiet"]
    code, _, err = run(capsys, "train", str(tmp_path / "sgs.json"), "--sample-size", "32", *common)
    assert code == 2 and len(err.strip().splitlines()) == 1, err  # was PyTorch's "Expected more than 1 value per channel" traceback
    assert "stages.3.0.dw_bn would normalise a single value per channel (a clip that keeps 1 bin(s) alone" in err
    code, _, err = run(capsys, "train", "mobilenet", "--width-mult", "0.5", "--sample-size", "32", "--batch-size", "1", *common)
    assert code == 2 and "stages.3.0.dw_bn would normalise a single value per channel (a batch of 1 clip(s), a 1x1x1 map)" in err


def ucf_with_a_bad_list(root: Path, line: str) -> Path:
    ann = root / "ucfTrainTestlist"
    ann.mkdir(parents=True)
    (ann / "classInd.txt").write_text("1 A\n2 B\n")
    for c in "AB":
        write_frames(root / c / f"v_{c}_g01_c01", level_frames(4, 16, 16))
    (ann / "trainlist01.txt").write_text(f"A/v_A_g01_c01.avi 1\n{line}\n")
    (ann / "testlist01.txt").write_text("B/v_B_g01_c01.avi\n")
    return root


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda p: p / "nowhere", "does not exist"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no videos found"),
        (lambda p: ucf_with_a_bad_list(p / "u", "A/v_A_g09_c01.avi 1"), "names 1 video(s) that are not under"),
        (lambda p: ucf_with_a_bad_list(p / "u", "C/v_C_g01_c01.avi 3"), "names class 'C', which is not among the 2 classes"),
    ],
    ids=["missing-path", "empty-dataset", "missing-video", "unknown-class"],
)
def test_bad_data_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, setup: object, words: str) -> None:
    data = setup(tmp_path)  # type: ignore[operator]
    code, _, err = run(capsys, "train", "mobilenet", "--data", str(data), "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and words in err and err.startswith("e3d train: error:")


def test_bad_arguments_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, words in [
        (["train", "mobilenet"], "--data PATH is required"),
        (["train", "nonet", "--format", "motion", "--cache-dir", str(tmp_path)], "unknown model 'nonet'"),
        (["train", "mobilenet", "--format", "motion", "--epochs", "0"], "must be a positive integer"),
        (["train", "mobilenet", "--format", "motion", "--dropout", "1.5"], "--dropout must be in [0, 1)"),
    ]:
        code, _, err = run(capsys, *argv, "--out", str(tmp_path / "o"))
        assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, (argv, err)


def test_a_video_dataset_trains_with_an_unreadable_file_skipped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "v"
    for split in ("train", "val"):
        for c in ("a", "b"):
            for i in range(2):
                write_video(root / split / c / f"{i}.mp4", level_frames(12, 40, 40) // (1 if c == "a" else 2))
    (root / "train" / "a" / "bad.mp4").write_bytes(b"garbage" * 10)
    clip = ["--sample-duration", "8", "--sample-size", "32", "--batch-size", "8", "--quiet", "--threads", "1"]
    argv = ["train", "mobilenet", "--width-mult", "0.25", "--data", str(root), "--epochs", "1", *clip]
    with pytest.warns(UserWarning, match=r"skipping .*bad\.mp4"):
        code, stdout, err = run(capsys, *argv, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"))
    assert code == 0, err
    assert "unreadable clips skipped" in stdout
    assert len(list((tmp_path / "c" / "frames").glob("*.frames"))) == 8  # every readable video decoded once, kept
    with pytest.warns(UserWarning, match=r"skipping .*bad\.mp4"):
        code, _, err = run(capsys, *argv, "--out", str(tmp_path / "o3"), "--cache-dir", str(tmp_path / "c3"), "--no-frame-cache")
    assert code == 0 and not (tmp_path / "c3" / "frames").exists(), err
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "o2"), "--fail-fast")
    assert code == 2 and "bad.mp4" in err and len(err.strip().splitlines()) == 1


def test_a_pretrained_checkpoint_without_a_state_dict_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    torch.save({"format": "e3d.checkpoint/1", "model": [1, 2]}, tmp_path / "edited.pt")
    argv = ["train", "mobilenet", "--format", "motion", "--pretrained", str(tmp_path / "edited.pt"), "--out", str(tmp_path / "o")]
    code, _, err = run(capsys, *argv, "--cache-dir", str(tmp_path / "c"), *TINY)  # was AttributeError: 'list' has no 'items'
    assert code == 2 and "edited.pt: an e3d checkpoint without weights" in err and len(err.strip().splitlines()) == 1, err


def test_weights_of_convert_checkpoint_are_pretrained_weights(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    from space.checkpoints import save_converted

    spec = space.paper_spec("mobilenet", width_mult=0.25, num_classes=600, sample_size=32, sample_duration=8)
    state = space.build(spec).state_dict()
    save_converted(tmp_path / "conv.pth", state, spec, model="mobilenet", source="paper.pth")
    argv = ["train", "mobilenet", "--width-mult", "0.25", "--format", "motion", "--cache-dir", str(tmp_path / "c"), *TINY]
    code, stdout, err = run(capsys, *argv, "--epochs", "1", "--pretrained", str(tmp_path / "conv.pth"), "--out", str(tmp_path / "o"))
    assert code == 0, err  # was "field 'model' must be a dict of tensors; it is a str"
    assert f"loaded {len(state) - 2} of {len(state)} tensors" in stdout and "new: head.fc.bias, head.fc.weight" in stdout
    code, _, err = run(capsys, "evaluate", str(tmp_path / "conv.pth"))
    assert code == 2 and "holds converted weights (e3d convert-checkpoint), not a run of e3d train" in err
    torch.save({k.replace("stem.", "conv1."): v for k, v in state.items()}, tmp_path / "paper.pth")
    state["head.fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    for file, words in (("paper.pth", "under other names"), ("nan.pth", "weight head.fc.weight is not finite")):
        code, _, err = run(capsys, *argv, "--pretrained", str(tmp_path / file), "--out", str(tmp_path / "p"))
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_ctrl_c_before_the_first_epoch_ends_says_nothing_is_saved(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.train

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(search.train, "fit", interrupted)
    argv = ["train", "mobilenet", "--width-mult", "0.25", "--format", "motion", "--out", str(tmp_path / "o")]
    code, _, err = run(capsys, *argv, "--cache-dir", str(tmp_path / "c"), *TINY)
    assert code == 130 and "stopped before the first epoch finished: nothing is saved in" in err, err
    assert "the last finished epoch is saved" not in err  # there was no last.pt


def test_help_explains_the_defaults() -> None:
    proc = subprocess.run([sys.executable, "-m", "e3d", "train", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for words in ("--freeze-backbone", "--resume", "dampening 0.9", "motion, digits", "--frame-step"):
        assert words in proc.stdout
    flat = " ".join(proc.stdout.split())
    assert "after round(E/2) and round(3E/4) of E epochs, once when they coincide" in flat  # was "at 50% and 75%": 3 epochs cut once
    assert "as for 3 epochs, cut after epoch 2" in flat and "50%" not in flat


def search_run(folder: Path, **recipe: object) -> Path:
    """A run folder as ``e3d search`` leaves it: best.json at the budget clip and recipe.json."""
    folder.mkdir(parents=True)
    space.paper_spec("mobilenet", width_mult=0.25, num_classes=10).save(folder / "best.json")  # 16x112x112
    made = {"format": "e3d.recipe/1", "task": "motion", "data": None, "data_format": None, "clip": [8, 32, 32]}
    made.update({"train_samples": 16, "val_samples": 12, "epochs": 1, "batch_size": 8, "lr": 0.05, "data_seed": 0, "seed": 3})
    made["precision"] = "fp32"
    (folder / "recipe.json").write_text(json.dumps({**made, **recipe}))
    return folder / "best.json"


def test_a_searched_spec_trains_the_way_the_search_trained_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    best = search_run(tmp_path / "search")
    cache = ["--cache-dir", str(tmp_path / "c"), "--quiet", "--threads", "1"]
    code, stdout, err = run(capsys, "train", str(best), "--data", "motion", "--out", str(tmp_path / "a"), *cache)
    assert code == 0, err
    assert "recipe   the search's" in stdout and "--recipe paper" in stdout
    state = load_checkpoint(tmp_path / "a")
    assert state["spec"]["clip"] == [8, 32, 32], "the search's clip, not the spec file's 16x112x112"
    c = state["config"]
    assert (c["lr"], c["epochs"], c["batch_size"], c["seed"], c["precision"]) == (0.05, 1, 8, 3, "fp32")
    assert "16 clips of 16 videos" in stdout and "12 clips of 12 videos" in stdout, "the search's training and held-out videos"
    for split, videos in (("val", 12), ("train", 16)):  # evaluate reads them too (it read the default 300 and 1200)
        code, stdout, err = run(capsys, "evaluate", str(tmp_path / "a"), "--split", split, "--json", *cache)
        assert code == 0 and json.loads(stdout)["videos"] == videos, err
    # an option given on the command line wins; no --data: the search's task
    code, stdout, err = run(capsys, "train", str(best), "--lr", "0.02", "--seed", "1", "--out", str(tmp_path / "b"), *cache)
    assert code == 0, err
    c = load_checkpoint(tmp_path / "b")["config"]
    assert (c["lr"], c["seed"], c["epochs"]) == (0.02, 1, 1) and load_checkpoint(tmp_path / "b")["meta"]["format"] == "motion"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--fold", "2", "--annotations", "x"], "--annotations, --fold: for a dataset's split lists; the built-in motion task has none"),
        (["--adapt-head"], "--adapt-head is for spec files; a preset (mobilenet)"),
    ],
)
def test_options_for_other_inputs_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], words: str) -> None:
    code, _, err = run(capsys, *tiny_mobilenet(tmp_path, tmp_path / "o"), *extra)
    assert code == 2 and words in err, err  # were accepted and ignored


def test_resume_with_nothing_to_resume_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, *tiny_mobilenet(tmp_path, tmp_path / "none"), "--resume")
    assert code == 2 and f"nothing to resume in {tmp_path / 'none'}" in err  # was a silent start from scratch
    assert not (tmp_path / "none").exists()


def test_the_default_run_folder_is_the_one_help_and_readme_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = "runs/train/mobilenet-w0.5-motion-s0"  # the help and the README said mobilenet-motion-w0.5-s0
    code, _, err = run(capsys, "train", "mobilenet", "--width-mult", "0.5", "--format", "motion", "--cache-dir", "c", *TINY)
    assert code == 0 and (tmp_path / folder / "last.pt").is_file(), err
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"e.g. {folder})" in " ".join(run(capsys, "train", "--help")[1].split()) and f"e3d profile {folder}/last.pt" in readme


def test_no_progress_bar_where_stderr_is_no_terminal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    loud = [a for a in tiny_mobilenet(tmp_path, tmp_path / "o") if a != "--quiet"]
    code, out, err = run(capsys, *loud, "--epochs", "1")
    assert code == 0 and "epoch 1/1" in out, err
    assert "\r" not in err + out  # the data generation, epoch and evaluation bars were drawn into logs


def test_an_explicit_data_seed_0_wins_over_the_recipes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    best = search_run(tmp_path / "search", data_seed=7)
    cache = ["--cache-dir", str(tmp_path / "c"), "--quiet", "--threads", "1"]
    for out, given, expected in (("a", [], 7), ("b", ["--data-seed", "0"], 0)):  # was 7 both times
        code, _, err = run(capsys, "train", str(best), *given, "--out", str(tmp_path / out), *cache)
        assert code == 0 and load_checkpoint(tmp_path / out)["meta"]["data_seed"] == expected, err


def test_a_recipe_without_lr_or_seed_and_with_a_non_square_clip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    best = search_run(tmp_path / "search", clip=[8, 32, 40], lr=None, seed=None)  # was a TypeError; the clip was squared
    code, stdout, err = run(capsys, "train", str(best), "--out", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "c"), "--quiet")
    assert code == 0, err
    assert "clip 8x32x40, 1 epochs, batch 8, lr 0.1, seed 0;" in stdout
    state = load_checkpoint(tmp_path / "a")
    assert state["spec"]["clip"] == [8, 32, 40] and (state["config"]["lr"], state["config"]["seed"]) == (0.1, 0)


def test_a_missing_spec_file_fails_before_any_data_is_made(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cache = tmp_path / "c"
    code, _, err = run(capsys, "train", str(tmp_path / "none.json"), "--format", "motion", "--cache-dir", str(cache), "--quiet")
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1
    assert not cache.exists(), "the proxy task was generated first (1,200 videos) before the spec was read"


def test_recipe_paper_uses_the_trainers_defaults(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    best = search_run(tmp_path / "search")
    argv = ["train", str(best), "--recipe", "paper", "--format", "motion", "--cache-dir", str(tmp_path / "c"), "--epochs", "1", *TINY]
    code, stdout, err = run(capsys, *argv, "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert "the search's" not in stdout
    c = load_checkpoint(tmp_path / "p")["config"]
    assert (c["lr"], c["seed"]) == (0.1, 0)


def test_recipe_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "alone" / "net.json"
    spec.parent.mkdir()
    space.paper_spec("mobilenet", width_mult=0.25, num_classes=10).save(spec)
    code, _, err = run(capsys, "train", str(spec), "--recipe", "search", "--format", "motion", "--out", str(tmp_path / "o"))
    assert code == 2 and "no recipe.json beside" in err and "--recipe paper" in err and len(err.strip().splitlines()) == 1
    best = search_run(tmp_path / "bad")
    for text in (b"{not json", b"[" * 100_000, b"\xff\xfe{"):  # too deep: was a RecursionError; not UTF-8: UnicodeDecodeError
        (best.parent / "recipe.json").write_bytes(text)
        code, _, err = run(capsys, "train", str(best), "--out", str(tmp_path / "o"))
        assert code == 2 and "is not a recipe written by e3d search" in err and len(err.strip().splitlines()) == 1
    for field, value, words in [  # hand edits: were TypeError and ValueError tracebacks
        ("epochs", "x", 'epochs must be a positive 64-bit integer; got "x"'),
        ("epochs", 1.5, "epochs must be a positive 64-bit integer; got 1.5"),
        ("seed", -5, "seed must be a non-negative 64-bit integer; got -5"),
        ("seed", 2**70, f"seed must be a non-negative 64-bit integer; got {2**70}"),  # was an OverflowError traceback
        ("data_seed", 2**64, f"data_seed must be a non-negative 64-bit integer; got {2**64}"),
        ("batch_size", True, "batch_size must be a positive 64-bit integer; got true"),
        ("clip", [8, "32", 32], "clip must be three positive integers"),
    ]:
        best = search_run(tmp_path / f"{field}{value}", **{field: value})
        code, _, err = run(capsys, "train", str(best), "--out", str(tmp_path / "o"))
        assert code == 2 and f"recipe.json: {words}" in err and len(err.strip().splitlines()) == 1, err


def test_the_searchs_precision_comes_with_its_recipe(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    best = search_run(tmp_path / "search", precision="bf16")
    code, _, err = run(capsys, "train", str(best), "--out", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "c"), "--quiet")
    if code == 2:  # a CPU without bf16 refuses it in one line: the recipe's precision was asked for
        assert "bf16" in err and len(err.strip().splitlines()) == 1
    else:
        assert code == 0, err
        assert load_checkpoint(tmp_path / "a")["config"]["precision"] == "bf16"
