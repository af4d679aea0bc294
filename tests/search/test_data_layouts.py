"""Layouts and split files (UCF-101, Jester, Kinetics, the paper's JSON, plain folders) on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.data import DataError, detect_format, read_layout
from tests.search.video_fixtures import level_frames, write_frames, write_video


def touch_video(path: Path) -> Path:
    """A 4-frame video file (layouts only look for files; decoding is tested elsewhere)."""
    return write_video(path, level_frames(4, 16, 16), codec="libvpx" if path.suffix == ".webm" else "libx264")


def ucf101(root: Path, *, frames: bool = True) -> Path:
    classes = ["ApplyEyeMakeup", "Biking", "YoYo"]
    ann = root / "ucfTrainTestlist"
    ann.mkdir(parents=True)
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    train, test = [], []
    for c in classes:
        for g in (1, 8):
            name = f"v_{c}_g{g:02d}_c01"
            if frames:
                write_frames(root / c / name, level_frames(3, 16, 16))
            else:
                touch_video(root / c / f"{name}.avi")
            (train if g == 8 else test).append(f"{c}/{name}.avi")
    (ann / "trainlist01.txt").write_text("".join(f"{v} {classes.index(v.split('/')[0]) + 1}\n" for v in train))
    (ann / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")  # the official lists have CRLF line ends
    return root


def test_ucf101_frame_folders_and_video_files(tmp_path: Path) -> None:
    for frames in (True, False):
        root = ucf101(tmp_path / str(frames), frames=frames)
        assert detect_format(root) == "ucf101"
        lay = read_layout(root)
        assert lay.format == "ucf101" and lay.class_names == ("ApplyEyeMakeup", "Biking", "YoYo")
        assert [(r.name, r.label) for r in lay.splits["train"]] == [
            ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
            ("Biking/v_Biking_g08_c01.avi", 1),
            ("YoYo/v_YoYo_g08_c01.avi", 2),
        ]
        assert lay.splits["val"] == lay.splits["test"] and len(lay.splits["test"]) == 3
        assert all(r.path.is_dir() == frames and r.path.exists() for r in lay.splits["train"])


def test_ucf101_split_naming_a_missing_video_or_unknown_class(tmp_path: Path) -> None:
    root = ucf101(tmp_path)
    lst = root / "ucfTrainTestlist" / "trainlist01.txt"
    lst.write_text(lst.read_text() + "YoYo/v_YoYo_g99_c01.avi 3\n")
    with pytest.raises(DataError, match=r"trainlist01.txt names 1 video\(s\) that are not under .*v_YoYo_g99_c01.avi"):
        read_layout(root)
    lay = read_layout(root, allow_missing=True)
    assert lay.missing["train"] == ("YoYo/v_YoYo_g99_c01.avi",) and len(lay.splits["train"]) == 3
    lst.write_text(lst.read_text() + "Juggling/v_Juggling_g01_c01.avi 4\n")
    with pytest.raises(DataError, match="names class 'Juggling', which is not among the 3 classes"):
        read_layout(root, allow_missing=True)
    with pytest.raises(DataError, match="folds 1, 2 and 3"):
        read_layout(root, fold=4)
    with pytest.raises(DataError, match=r"missing split file .*trainlist02\.txt"):
        read_layout(root, fold=2)


def test_jester_csvs_and_five_digit_frame_folders(tmp_path: Path) -> None:
    root = tmp_path / "jester"
    labels = ["Swiping Left", "Swiping Right", "No gesture"]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "jester-v1-labels.csv").write_text("\n".join(labels) + "\n")
    rows = {"train": [(1, 0), (2, 1), (3, 2)], "validation": [(4, 1), (5, 2)]}
    for split, items in rows.items():
        (root / "annotations" / f"jester-v1-{split}.csv").write_text("".join(f"{i};{labels[c]}\n" for i, c in items))
        for i, _ in items:
            write_frames(root / "20bn-jester-v1" / str(i), level_frames(2, 16, 16), pattern="{:05d}.jpg")
    (root / "annotations" / "jester-v1-test.csv").write_text("6\n7\n")
    assert detect_format(root) == "jester"
    lay = read_layout(root)
    assert lay.class_names == tuple(labels)
    assert [(r.name, r.label) for r in lay.splits["train"]] == [("1", 0), ("2", 1), ("3", 2)]
    assert [r.label for r in lay.splits["val"]] == [1, 2] and lay.splits["test"] == lay.splits["val"]
    assert any("test CSV has no labels" in n for n in lay.notes)
    given = read_layout(root, annotations=root / "annotations" / "jester-v1-train.csv")  # a file: its folder
    assert given.format == "jester" and given.splits == lay.splits  # was 'cannot read ...: Not a directory'
    (root / "annotations" / "jester-v1-validation.csv").write_text("4;Thumb Up\n")
    with pytest.raises(DataError, match="names class 'Thumb Up'"):
        read_layout(root)


def kinetics(root: Path) -> Path:
    rows = [
        ("abseiling", "aaa", 10, 20, "train"),
        ("juggling balls", "bbb", 0, 10, "train"),
        ("abseiling", "ccc", 5, 15, "val"),
        ("juggling balls", "ddd", 30, 40, "val"),
    ]
    root.mkdir(parents=True)
    (root / "kinetics_train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n" + "".join(f"{lab},{y},{s},{e},{sp},0\n" for lab, y, s, e, sp in rows)
    )
    for lab, y, s, e, sp in rows:
        touch_video(root / sp / lab / f"{y}_{s:06d}_{e:06d}.mp4")
    return root


def test_kinetics_csv_and_label_folders(tmp_path: Path) -> None:
    root = kinetics(tmp_path / "k600")
    assert detect_format(root) == "kinetics"
    lay = read_layout(root)
    assert lay.class_names == ("abseiling", "juggling balls")
    assert [(r.path.name, r.label) for r in lay.splits["train"]] == [("aaa_000010_000020.mp4", 0), ("bbb_000000_000010.mp4", 1)]
    assert len(lay.splits["val"]) == 2 and lay.splits["test"] == lay.splits["val"]
    (root / "val" / "abseiling" / "ccc_000005_000015.mp4").unlink()
    with pytest.raises(DataError, match="ccc_000005_000015"):
        read_layout(root)
    assert read_layout(root, allow_missing=True).missing["val"] == ("abseiling/ccc_000005_000015",)


def test_the_papers_json_annotations(tmp_path: Path) -> None:
    root = tmp_path / "jpg"
    db = {
        "v_a_g08_c01": {"subset": "training", "annotations": {"label": "A", "segment": [1, 3]}},
        "v_b_g08_c01": {"subset": "training", "annotations": {"label": "B", "segment": [1, 3]}},
        "v_a_g01_c01": {"subset": "validation", "annotations": {"label": "A", "segment": [1, 3]}},
        "x_unlabelled": {"subset": "testing", "annotations": {}},
    }
    for vid, info in db.items():
        if info["annotations"]:
            write_frames(root / str(info["annotations"]["label"]) / vid, level_frames(3, 16, 16))
    ann = tmp_path / "ucf101_01.json"
    ann.write_text(json.dumps({"labels": ["A", "B"], "database": db}))
    lay = read_layout(root, format="json", annotations=ann)  # videos and annotations apart, as the paper's code keeps them
    assert lay.class_names == ("A", "B")
    assert [(r.name, r.label) for r in lay.splits["train"]] == [("A/v_a_g08_c01", 0), ("B/v_b_g08_c01", 1)]
    assert [r.name for r in lay.splits["test"]] == ["A/v_a_g01_c01"]
    beside = root / "ucf101_01.json"
    beside.write_text(ann.read_text())
    assert detect_format(root) == "json"
    assert read_layout(beside).splits["train"] == read_layout(root).splits["train"] == lay.splits["train"]
    db["v_c"] = {"subset": "training", "annotations": {"label": "C"}}
    ann.write_text(json.dumps({"labels": ["A", "B"], "database": db}))
    with pytest.raises(DataError, match="names class 'C'"):
        read_layout(root, format="json", annotations=ann)


def test_plain_folders_with_and_without_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    for c in ("cat", "dog"):
        for i in range(10):
            touch_video(root / c / f"clip{i}.mkv")
    (root / "cat" / "notes.txt").write_text("not a video")
    assert detect_format(root) == "folder"
    lay = read_layout(root)
    assert lay.class_names == ("cat", "dog")
    sizes = {s: len(v) for s, v in lay.splits.items()}
    assert sizes == {"train": 16, "val": 2, "test": 2}
    names = [{r.name for r in lay.splits[s]} for s in ("train", "val", "test")]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert read_layout(root).splits == lay.splits  # deterministic

    split_root = tmp_path / "split"
    for s in ("train", "val"):
        for c in ("cat", "dog"):
            touch_video(split_root / s / c / "a.webm")
    lay = read_layout(split_root)
    assert [len(lay.splits[s]) for s in ("train", "val", "test")] == [2, 2, 2]
    touch_video(split_root / "val" / "cow" / "a.webm")
    with pytest.raises(DataError, match="names class 'cow'"):
        read_layout(split_root)


def test_a_stray_json_beside_class_folders_is_not_taken_for_annotations(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    for c in ("cat", "dog"):
        touch_video(root / c / "a.mkv")
    (root / "info.json").write_text(json.dumps({"source": "camera", "fps": 25}))
    assert detect_format(root) == "folder"  # was "json", then "expected an object with 'labels' ... and 'database'"
    assert read_layout(root).class_names == ("cat", "dog")
    (root / "info.json").write_text(json.dumps({"labels": ["cat", "dog"], "database": {}}))
    assert detect_format(root) == "json"


def test_train_and_test_folders_without_val_are_refused_not_read_as_classes(tmp_path: Path) -> None:
    root = tmp_path / "tt"
    for s in ("train", "test"):
        for c in ("cat", "dog"):
            touch_video(root / s / c / "a.mkv")
    with pytest.raises(DataError, match=r"split folders train/ and test/ but no val/ folder"):  # was classes 'train', 'test'
        read_layout(root)


def test_missing_path_and_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_layout(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no videos found"):
        read_layout(tmp_path / "empty")
    with pytest.raises(DataError, match="unknown data format"):
        read_layout(tmp_path, format="hmdb")


def test_a_binary_csv_is_not_kinetics_and_cannot_be_read_as_kinetics(tmp_path: Path) -> None:
    root = tmp_path / "bincsv"
    root.mkdir()
    (root / "x.csv").write_bytes(bytes(range(128, 256)) * 8)
    assert detect_format(root) == "folder"
    with pytest.raises(DataError, match="no videos found"):
        read_layout(root)
    with pytest.raises(DataError, match=r"cannot read .*x\.csv"):
        read_layout(root, format="kinetics")
    with pytest.raises(DataError, match=r"cannot read .*x\.csv"):
        read_layout(kinetics(tmp_path / "k"), annotations=root / "x.csv")


@pytest.mark.parametrize(("start", "end"), [("inf", "10"), ("1e400", "10"), ("nan", "10"), ("-1", "10"), ("20", "10"), ("0", "-inf")])
def test_kinetics_times_must_be_finite_and_ordered(tmp_path: Path, start: str, end: str) -> None:
    root = kinetics(tmp_path / "k")
    (root / "kinetics_train.csv").write_text(f"label,youtube_id,time_start,time_end,split\nabseiling,aaa,{start},{end},train\n")
    with pytest.raises(DataError, match=r"line 2: time_start .* must be finite, 0 <= start <= end"):
        read_layout(root)


def test_annotations_elsewhere_are_read_and_unused_ones_refused(tmp_path: Path) -> None:
    root = ucf101(tmp_path / "ucf")
    moved = (root / "ucfTrainTestlist").rename(tmp_path / "lists")
    assert detect_format(root) == "folder" and detect_format(root, moved) == "ucf101"  # was read as class folders
    assert read_layout(root, annotations=moved).format == "ucf101"
    by_file = read_layout(root, annotations=moved / "trainlist01.txt")  # help: "folder or file of the split lists"
    assert by_file.format == "ucf101" and by_file.splits == read_layout(root, annotations=moved).splits  # was 'Not a directory'
    (tmp_path / "lone").mkdir()
    (tmp_path / "lone" / "trainlist01.txt").write_text("")
    with pytest.raises(DataError, match=r"lone/trainlist01.txt: its folder holds no classInd.txt"):
        read_layout(root, format="ucf101", annotations=tmp_path / "lone" / "trainlist01.txt")
    plain = tmp_path / "plain"
    touch_video(plain / "cat" / "a.mkv")
    (tmp_path / "notes.txt").write_text("x")
    for ann, words in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "notes.txt", "the folder layout reads no split lists")):
        with pytest.raises(DataError, match=words):  # was silently ignored
            read_layout(plain, annotations=ann)
