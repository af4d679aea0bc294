"""space.files: atomic writes keep the old file on failure and leave no temporary file; write and
permission errors are one line naming the path."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from space.files import (
    WriteError,
    atomic_write,
    check_file,
    check_writable,
    missing_parents,
    remove_empty,
    replacing,
    replacing_files,
    write_text,
)
from tests.faults import listing, no_space, readonly_dir

__all__ = ["readonly_dir"]  # fixture


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_text(tmp_path / "a.csv", "old\n")
    no_space(monkeypatch, tmp_path, after_bytes=3)
    with pytest.raises(WriteError, match=r"cannot write .*a\.csv: no space left on the device"):
        write_text(path, "new and longer\n")
    assert path.read_text() == "old\n" and listing(tmp_path) == ["a.csv"]


def test_an_error_in_the_writer_removes_the_temporary_file(tmp_path: Path) -> None:
    def broken(f: object) -> None:
        raise RuntimeError("serialiser bug")

    with pytest.raises(RuntimeError, match="serialiser bug"):
        atomic_write(tmp_path / "x.bin", broken)
    with pytest.raises(RuntimeError, match="serialiser bug"), replacing(tmp_path / "y.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("serialiser bug")
    assert listing(tmp_path) == []


def test_concurrent_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for _ in range(20):
                write_text(tmp_path / "trials.csv", f"{i}\n" * 1000)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and listing(tmp_path) == ["trials.csv"]
    assert len(set((tmp_path / "trials.csv").read_text().splitlines())) == 1, "one writer's whole file"


def test_check_writable_refuses_a_read_only_folder_and_creates_nothing(readonly_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(WriteError, match=r"cannot write to .*sub"):
        check_writable(readonly_dir / "sub")
    assert listing(readonly_dir) == []
    check_writable(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists(), "checked through the nearest existing folder, nothing created"
    with pytest.raises(WriteError, match="is a file"):
        check_writable(write_text(tmp_path / "f", "x") / "sub")


def test_missing_parents_are_removed_again_only_when_empty(tmp_path: Path) -> None:
    folders = missing_parents(tmp_path / "a" / "b")
    assert folders == [tmp_path / "a", tmp_path / "a" / "b"]
    (tmp_path / "a" / "b").mkdir(parents=True)
    remove_empty(folders)
    assert not (tmp_path / "a").exists()
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_text(tmp_path / "a" / "keep.txt", "x")
    remove_empty(folders)
    assert listing(tmp_path / "a") == ["keep.txt"]


def test_replacing_files_moves_the_companions_first_and_leaves_no_temporary_folder(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    with replacing_files(out) as tmp:
        assert tmp.name == "m.onnx" and tmp.parent.parent == tmp_path
        tmp.write_text("model")
        tmp.with_name("m.onnx.data").write_text("weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    with pytest.raises(ValueError, match="check failed"), replacing_files(out) as tmp:
        tmp.write_text("new model")
        tmp.with_name("m.onnx.data").write_text("new weights")
        raise ValueError("check failed")
    assert (out.read_text(), (tmp_path / "m.onnx.data").read_text()) == ("model", "weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]


@pytest.mark.parametrize("name", ["", ".", "..", "out/.."])
def test_a_path_that_names_no_file_is_one_line(tmp_path: Path, name: str) -> None:
    with pytest.raises(WriteError, match="it names no file"):
        write_text(name, "x")
    with pytest.raises(WriteError, match="it names no file"):
        check_file(name)


def test_check_file_refuses_a_folder_and_a_file_as_parent(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(WriteError, match="it is a folder"):
        check_file(tmp_path)
    with pytest.raises(WriteError, match="afile is a file, not a folder"):
        check_file(tmp_path / "afile" / "x.json")
    assert check_file(tmp_path / "new" / "x.json") == tmp_path / "new" / "x.json" and not (tmp_path / "new").exists()
