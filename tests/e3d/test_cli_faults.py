"""Full and read-only disks, and e3d's own checkpoints, through export and convert-checkpoint:
one line and exit 2, checked before the work, and never a truncated file under the final name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import space
from tests.conftest import paper_code_models
from tests.e3d.fixtures import run
from tests.faults import full_dir, listing, no_space, readonly_dir
from tests.space.test_checkpoints import paper_state, save_paper_checkpoint

__all__ = ["full_dir", "readonly_dir"]  # fixtures

TINY = ["mobilenet", "--width-mult", "0.25", "--frames", "4", "--size", "32", "--num-classes", "5"]


def _one_line(err: str, *words: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert all(w in lines[0] for w in words), err


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_to_a_full_disk_is_one_line_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "m.pt").write_bytes(b"previous")
    no_space(monkeypatch, out_dir, after_bytes=10)  # the pre-check's probe fits, the model does not
    code, _out, err = run(capsys, "export", *TINY, "--format", fmt, "--out", str(out_dir / "m.pt"))
    assert code == 2, err
    _one_line(err, "m.pt", "no space left")
    assert listing(out_dir) == ["m.pt"] and (out_dir / "m.pt").read_bytes() == b"previous", "no temporary file; the old file kept"


def test_export_to_a_real_full_tmpfs(capsys: pytest.CaptureFixture[str], full_dir: Path) -> None:
    code, _out, err = run(capsys, "export", *TINY, "--format", "torchscript", "--out", str(full_dir / "m.pt"))
    assert code == 2, err
    _one_line(err, str(full_dir), "no space left")
    assert listing(full_dir) == ["filler"]


def test_export_into_a_read_only_folder_fails_before_exporting(capsys: pytest.CaptureFixture[str], readonly_dir: Path) -> None:
    code, out, err = run(capsys, "export", *TINY, "--format", "onnx", "--out", str(readonly_dir / "sub" / "m.onnx"))
    assert code == 2 and out == ""
    _one_line(err, "cannot write to", str(readonly_dir / "sub"))


def test_convert_checkpoint_into_a_read_only_folder_or_a_full_disk(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, readonly_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paper = next(p for p in paper_code_models() if p.family == "mobilenetv2" and p.width == 0.2)
    src = save_paper_checkpoint(tmp_path / "m.pth", paper_state(paper))
    argv = ["convert-checkpoint", str(src), "--model", "mobilenetv2", "--width-mult", "0.2"]
    code, out, err = run(capsys, *argv, "--out", str(readonly_dir / "o.pth"))
    assert code == 2 and out == ""
    _one_line(err, "cannot write to", str(readonly_dir))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    no_space(monkeypatch, out_dir, after_bytes=10)
    code, out, err = run(capsys, *argv, "--out", str(out_dir / "o.pth"))
    assert code == 2 and out == ""
    _one_line(err, "o.pth", "no space left")
    assert listing(out_dir) == []


def test_export_loads_the_checkpoint_of_e3d_train(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from search.train import CHECKPOINT_FORMAT, save_checkpoint

    spec = space.paper_spec("mobilenet", width_mult=0.25, num_classes=5, sample_size=32, sample_duration=4)
    (tmp_path / "best.json").write_text(spec.to_json())
    model = space.build(spec)
    with torch.no_grad():
        model.head.fc.weight.fill_(0.25)
    save_checkpoint(tmp_path / "last.pt", {"format": CHECKPOINT_FORMAT, "epoch": 1, "model": model.state_dict(), "history": []})
    out_file = tmp_path / "m.pt"
    argv = ["export", str(tmp_path / "best.json"), "--format", "torchscript", "--checkpoint", str(tmp_path / "last.pt")]
    code, _out, err = run(capsys, *argv, "--out", str(out_file))
    assert code == 0, err
    loaded = torch.jit.load(str(out_file))
    assert torch.equal(dict(loaded.named_parameters())["head.fc.weight"], model.head.fc.weight)


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this ran",))


@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_a_malicious_checkpoint_is_refused_without_torch_s_unsafe_advice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "e3d.checkpoint/1", "model": Evil()}, path)
    if command == "export":
        code, out, err = run(capsys, "export", *TINY, "--format", "torchscript", "--checkpoint", str(path), "--out", str(tmp_path / "m.pt"))
    else:
        code, out, err = run(capsys, "evaluate", str(path), "--data", "motion")
    assert code == 2 and "this ran" not in out
    _one_line(err, "refused")
    assert "weights_only=False" not in err and "weights_only` set to `False`" not in err and "will likely succeed" not in err


def test_analyze_into_a_read_only_folder_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, readonly_dir: Path) -> None:
    from search.results import study_frame, write_outputs
    from tests.analysis.helpers import MIXED, make_study

    write_outputs(study_frame(make_study(MIXED)), tmp_path / "run")
    code, out, err = run(capsys, "analyze", "--csv", str(tmp_path / "run"), "--out", str(readonly_dir / "a"), "--no-paper", "--quiet")
    assert code == 2 and out == ""
    _one_line(err, "cannot write to", str(readonly_dir / "a"))


def test_a_spec_saved_with_a_byte_order_mark_profiles(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = space.paper_spec("mobilenet", width_mult=0.25, num_classes=5, sample_size=32, sample_duration=4)
    path = tmp_path / "bom.json"
    path.write_text(spec.to_json(), encoding="utf-8-sig")
    code, out, err = run(capsys, "profile", str(path), "--no-latency", "--json")
    assert json.loads(out)["macs"] > 0
    assert code == 0, err
    assert space.NetSpec.load(path) == spec


def test_train_into_a_read_only_folder_fails_before_the_first_epoch(
    capsys: pytest.CaptureFixture[str], readonly_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*a: object, **k: object) -> object:
        raise AssertionError("no epoch is trained when its checkpoint cannot be written")

    monkeypatch.setattr("search.train.fit", never)
    argv = ["train", "mobilenet", "--width-mult", "0.25", "--data", "motion", "--sample-duration", "8", "--sample-size", "32"]
    code, _, err = run(capsys, *argv, "--num-samples", "16", "--quiet", "--out", str(readonly_dir / "t"))
    assert code == 2, err
    _one_line(err, "cannot write to", str(readonly_dir / "t"))


def test_a_training_checkpoint_on_a_full_disk_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.train import save_checkpoint
    from space.files import WriteError

    save_checkpoint(tmp_path / "last.pt", {"format": "e3d.checkpoint/1", "epoch": 1})
    no_space(monkeypatch, tmp_path, after_bytes=10)
    with pytest.raises(WriteError, match=r"last\.pt: no space left"):
        save_checkpoint(tmp_path / "last.pt", {"format": "e3d.checkpoint/1", "epoch": 2, "model": {"w": torch.zeros(100)}})
    assert listing(tmp_path) == ["last.pt"] and torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


def test_an_unknown_allocator_setting_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from profiler import allocator

    monkeypatch.setattr(allocator, "_state", None)  # as in a fresh process
    monkeypatch.setenv("E3D_MALLOC", "turbo")
    code, out, err = run(capsys, "models")
    assert code == 2 and not out
    assert err == "e3d models: error: E3D_MALLOC='turbo': choose keep or system\n"
