"""Dataset layouts and split files: which videos belong to which split, and their classes.

Supported layouts (``format``):

- ``folder``: ``root/<class>/<video>`` where a video is a file (mp4, avi, mkv, webm, mov) or a folder of
  jpg/png frames; with ``root/train``, ``root/val`` (and optionally ``root/test``) each laid out that
  way, those are the splits (``train`` and ``test`` without ``val`` is a :class:`DataError`); otherwise
  each class is split deterministically (by a hash of the name):
  10% validation, 10% test (at least one each for classes of 3 or more videos), the rest training.
- ``ucf101``: ``classInd.txt``, ``trainlist0N.txt`` and ``testlist0N.txt`` (fold N); videos as
  ``root/<class>/v_..._cNN.avi`` or frame folders ``root/<class>/v_..._cNN/image_00001.jpg``.
  UCF-101 has no validation list: validation and test are both the test list.
- ``jester``: ``*labels*.csv`` (one class per line), ``*train*.csv`` and ``*validation*.csv`` (``id;label``),
  frame folders ``root/<id>/00001.jpg``. The test labels are not public: test is the validation list.
- ``kinetics``: CSVs ``label,youtube_id,time_start,time_end,split``; videos
  ``root/[<split>/]<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (or frame folders of that name).
- ``json``: the paper's code's annotation file: ``labels`` and ``database`` mapping each video id to its
  ``subset`` (training/validation/testing) and ``annotations.label``; videos ``root/<label>/<id>`` or ``root/<id>``.

A split file that names a video that is not there, or a class that is not listed, is a :class:`DataError`
(``allow_missing`` skips missing videos and records them in :attr:`Layout.missing` instead).
"""

from __future__ import annotations

import csv
import json
import math
import os
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.data.errors import DataError
from search.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key

FORMATS = ("folder", "ucf101", "jester", "kinetics", "json")
"""Layouts of real data on disk (the proxy tasks are in :mod:`search.data.proxy`)."""
SPLITS = ("train", "val", "test")
_SPLIT_DIRS = {"train": ("train", "training"), "val": ("val", "validation", "valid", "validate"), "test": ("test", "testing")}


@dataclass(frozen=True)
class VideoRecord:
    """One video: where it is (file or frame folder), its class index and its name in the split file."""

    path: Path
    label: int
    name: str


@dataclass(frozen=True)
class Layout:
    """A dataset on disk: its classes and the videos of each split."""

    format: str
    root: Path
    class_names: tuple[str, ...]
    splits: Mapping[str, tuple[VideoRecord, ...]]
    notes: tuple[str, ...] = ()
    missing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def split(self, name: str) -> tuple[VideoRecord, ...]:
        """The videos of split ``name``; :class:`DataError` when it has none."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        records = self.splits.get(name, ())
        if not records:
            raise DataError(f"no videos in the {name!r} split of {self.root} ({self.format} layout)")
        return records


class _Finder:
    """Resolves a video name from a split file to an existing file or frame folder under some bases."""

    def __init__(self, bases: Iterable[Path]) -> None:
        self.bases = [b for b in bases if b.is_dir()]
        self._listing: dict[Path, frozenset[str]] = {}

    def _names(self, folder: Path) -> frozenset[str]:
        if folder not in self._listing:
            try:
                self._listing[folder] = frozenset(os.listdir(folder))
            except OSError:
                self._listing[folder] = frozenset()
        return self._listing[folder]

    def find(self, rel: str) -> Path | None:
        """``rel`` itself, without its video suffix (a frame folder), or with any video suffix."""
        rel = rel.strip().strip("/")
        head, _, name = rel.rpartition("/")
        stem = name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in VIDEO_EXTENSIONS else name
        candidates = [name, stem, *(stem + ext for ext in sorted(VIDEO_EXTENSIONS))]
        for base in self.bases:
            folder = base / head if head else base
            names = self._names(folder)
            for c in candidates:
                if c in names:
                    return folder / c
        return None


def _resolve(
    finder: _Finder, entries: list[tuple[str, int]], source: str, root: Path, allow_missing: bool
) -> tuple[tuple[VideoRecord, ...], tuple[str, ...]]:
    records, missing = [], []
    for rel, label in entries:
        path = finder.find(rel)
        if path is None:
            missing.append(rel)
        else:
            records.append(VideoRecord(path, label, rel))
    if missing and not allow_missing:
        raise DataError(
            f"{source} names {len(missing)} video(s) that are not under {root}, e.g. {missing[0]!r} (pass --allow-missing to skip them)"
        )
    return tuple(records), tuple(missing)


def _class_index(class_names: tuple[str, ...], source: str) -> dict[str, int]:
    index = {c: i for i, c in enumerate(class_names)}
    if len(index) != len(class_names):
        dup = next(c for c in class_names if class_names.count(c) > 1)
        raise DataError(f"{source} lists class {dup!r} twice")
    return index


def _label(index: Mapping[str, int], name: str, source: str) -> int:
    try:
        return index[name]
    except KeyError:
        raise DataError(f"{source} names class {name!r}, which is not among the {len(index)} classes") from None


def _read_lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _is_video_entry(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):
        return False
    if entry.is_dir():
        return True
    return entry.is_file() and Path(entry.name).suffix.lower() in VIDEO_EXTENSIONS


def _class_tree(root: Path) -> dict[str, list[Path]]:
    """``root/<class>/<video>``: class name -> its videos, in natural order."""
    tree: dict[str, list[Path]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            videos = sorted((Path(e.path) for e in os.scandir(entry.path) if _is_video_entry(e)), key=lambda p: natural_key(p.name))
            tree[entry.name] = videos
    return tree


def _split_dir(root: Path, split: str) -> Path | None:
    for name in _SPLIT_DIRS[split]:
        if (root / name).is_dir():
            return root / name
    return None


def read_folder(root: Path) -> Layout:
    """``root/<class>/<video>``, or ``root/{train,val,test}/<class>/<video>`` (see the module docstring)."""
    train_dir, val_dir, test_dir = (_split_dir(root, s) for s in SPLITS)
    if train_dir is not None and val_dir is None and test_dir is not None:
        where = f"{root} has split folders {train_dir.name}/ and {test_dir.name}/"
        raise DataError(f"{where} but no val/ folder; add {root / 'val'}/<class>/<video>")
    if train_dir is not None and val_dir is not None:
        trees = {s: _class_tree(d) for s in SPLITS if (d := _split_dir(root, s)) is not None}
        class_names = tuple(c for c, v in trees["train"].items() if v)
        index = _class_index(class_names, str(train_dir))
        splits: dict[str, tuple[VideoRecord, ...]] = {}
        for s, tree in trees.items():
            base = _split_dir(root, s)
            recs = [VideoRecord(p, _label(index, c, f"{base}"), f"{c}/{p.name}") for c, vids in tree.items() if vids for p in vids]
            splits[s] = tuple(recs)
        notes = () if "test" in splits else ("no test folder: test is the validation split",)
        if "test" not in splits:
            splits["test"] = splits["val"]
        return Layout("folder", root, class_names, splits, notes)
    tree = _class_tree(root)
    class_names = tuple(c for c, v in tree.items() if v)
    parts: dict[str, list[VideoRecord]] = {s: [] for s in SPLITS}
    for label, c in enumerate(class_names):
        vids = sorted(tree[c], key=lambda p: (zlib.crc32(f"{c}/{p.name}".encode()), p.name))
        hold = max(1, round(0.1 * len(vids))) if len(vids) >= 3 else 0
        for i, p in enumerate(vids):
            s = "val" if i < hold else "test" if i < 2 * hold else "train"
            parts[s].append(VideoRecord(p, label, f"{c}/{p.name}"))
    return Layout(
        "folder",
        root,
        class_names,
        {s: tuple(sorted(r, key=lambda r: (r.label, natural_key(r.name)))) for s, r in parts.items()},
        ("no train/val folders: each class split by name hash, 10% val, 10% test",),
    )


def _annotation_dir(root: Path, annotations: Path | None, marker: str, *extra: str, file_ok: bool = False) -> Path:
    """Where the split lists are: ``annotations`` (a file given for a layout of several lists, unless ``file_ok``,
    stands for its folder, which must hold ``marker``), else the first of ``root`` and ``root/<extra>`` that does."""
    if annotations is not None:
        if not annotations.exists():
            raise DataError(f"annotations path {annotations} does not exist")
        if file_ok or annotations.is_dir():
            return annotations
        if not any(annotations.parent.glob(marker)):
            raise DataError(f"--annotations {annotations}: its folder holds no {marker}; pass the folder of the split lists")
        return annotations.parent
    for d in (root, *(root / e for e in extra)):
        if any(d.glob(marker)):
            return d
    raise DataError(f"no {marker} under {root}; pass --annotations DIR")


def read_ucf101(root: Path, *, annotations: Path | None = None, fold: int = 1, allow_missing: bool = False) -> Layout:
    """UCF-101: ``classInd.txt`` and the train/test lists of ``fold`` (1-3)."""
    ann = _annotation_dir(root, annotations, "classInd.txt", "ucfTrainTestlist", "annotations")
    class_names = []
    for i, line in enumerate(_read_lines(ann / "classInd.txt")):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{ann / 'classInd.txt'} line {i + 1}: expected '<index> <class>', got {line!r}")
        class_names.append(parts[1])
    names = tuple(class_names)
    index = _class_index(names, str(ann / "classInd.txt"))
    finder = _Finder([root])
    splits, missing = {}, {}
    for split, fname in (("train", f"trainlist{fold:02d}.txt"), ("test", f"testlist{fold:02d}.txt")):
        path = ann / fname
        if not path.is_file():
            raise DataError(f"missing split file {path}")
        entries = []
        for line in _read_lines(path):
            rel = line.split()[0]
            entries.append((rel, _label(index, rel.split("/")[0], str(path))))
        splits[split], missing[split] = _resolve(finder, entries, str(path), root, allow_missing)
    splits["val"], missing["val"] = splits["test"], missing["test"]
    return Layout("ucf101", root, names, splits, (f"fold {fold}; val and test are both testlist{fold:02d}.txt",), missing)


def _one(ann: Path, *patterns: str) -> Path | None:
    for pattern in patterns:
        found = sorted(ann.glob(pattern))
        if found:
            return found[0]
    return None


def read_jester(root: Path, *, annotations: Path | None = None, allow_missing: bool = False) -> Layout:
    """20BN-Jester: ``id;label`` CSVs and frame folders ``root/<id>``."""
    ann = _annotation_dir(root, annotations, "*train*.csv", "annotations")
    lists = {
        "train": _one(ann, "*train*.csv"),
        "val": _one(ann, "*validation*.csv", "*val*.csv"),
        "test": _one(ann, "*test*.csv"),
    }
    for s in ("train", "val"):
        if lists[s] is None:
            raise DataError(f"no {s} CSV (*{'train' if s == 'train' else 'validation'}*.csv) in {ann}")
    rows: dict[str, list[tuple[str, str | None]]] = {}
    for s, path in lists.items():
        if path is not None:
            rows[s] = []
            for line in _read_lines(path):
                vid, _, label = line.partition(";")
                rows[s].append((vid.strip(), label.strip() or None))
    labels_file = _one(ann, "*labels*.csv")
    if labels_file is not None:
        names = tuple(_read_lines(labels_file))
    else:
        names = tuple(sorted({lab for _, lab in rows["train"] if lab}))
    index = _class_index(names, str(labels_file or lists["train"]))
    base = root / "20bn-jester-v1" if (root / "20bn-jester-v1").is_dir() else root
    finder = _Finder([base])
    splits, missing = {}, {}
    notes = []
    for s, entries in rows.items():
        source = str(lists[s])
        if any(lab is None for _, lab in entries):
            if s != "test":
                raise DataError(f"{source}: every line needs 'id;label'")
            notes.append("the test CSV has no labels: test is the validation list")
            continue
        resolved = [(vid, _label(index, lab or "", source)) for vid, lab in entries]
        splits[s], missing[s] = _resolve(finder, resolved, source, base, allow_missing)
    if "test" not in splits:
        splits["test"], missing["test"] = splits["val"], missing["val"]
    return Layout("jester", root, names, splits, tuple(notes), missing)


def _kinetics_split(value: str, filename: str) -> str | None:
    v = (value or filename).lower()
    for split, words in _SPLIT_DIRS.items():
        if any(w in v for w in words):
            return split
    return None


def _kinetics_name(row: Mapping[str, str | None], where: str) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>`` of a Kinetics row; :class:`DataError` unless 0 <= start <= end, finite."""
    try:
        start, end = float(row["time_start"] or ""), float(row["time_end"] or "")
        youtube_id = row["youtube_id"]
        if not youtube_id:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: needs youtube_id, time_start and time_end") from None
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
        raise DataError(f"{where}: time_start {row['time_start']!r} and time_end {row['time_end']!r} must be finite, 0 <= start <= end")
    return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def read_kinetics(root: Path, *, annotations: Path | None = None, allow_missing: bool = False) -> Layout:
    """Kinetics-400/600/700: ``label,youtube_id,time_start,time_end,split`` CSVs."""
    ann = _annotation_dir(root, annotations, "*.csv", "annotations", file_ok=True)
    csvs = [ann] if ann.is_file() else sorted(ann.glob("*.csv"))
    rows: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    sources: dict[str, str] = {}
    unlabelled: set[str] = set()
    for path in csvs:
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "youtube_id" not in reader.fieldnames:
                    continue
                for i, row in enumerate(reader):
                    split = _kinetics_split(row.get("split") or "", path.stem)
                    if split is None:
                        raise DataError(f"{path} line {i + 2}: unknown split {row.get('split')!r}")
                    name = _kinetics_name(row, f"{path} line {i + 2}")
                    label = (row.get("label") or "").strip()
                    if not label:
                        unlabelled.add(split)
                        continue
                    rows[split].append((label, name))
                    sources.setdefault(split, str(path))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"cannot read {path}: {e}") from None
    if not rows["train"]:
        raise DataError(f"no labelled training rows (label,youtube_id,time_start,time_end,split) in the CSVs of {ann}")
    names = tuple(sorted({lab for lab, _ in rows["train"]}))
    index = _class_index(names, sources["train"])
    splits, missing = {}, {}
    notes = []
    for s in SPLITS:
        if not rows[s]:
            continue
        bases = [root, *(root / d for d in _SPLIT_DIRS[s])]
        finder = _Finder(bases)
        entries = [(f"{lab}/{name}", _label(index, lab, sources[s])) for lab, name in rows[s]]
        splits[s], missing[s] = _resolve(finder, entries, sources[s], root, allow_missing)
    if "test" not in splits and "val" in splits:
        notes.append("no labelled test rows: test is the validation split")
        splits["test"], missing["test"] = splits["val"], missing["val"]
    return Layout("kinetics", root, names, splits, tuple(notes), missing)


def read_json(root: Path, *, annotations: Path | None = None, allow_missing: bool = False) -> Layout:
    """The paper's code's JSON: ``{"labels": [...], "database": {id: {"subset", "annotations": {"label"}}}}``."""
    path = annotations
    if path is None:
        found = sorted(root.glob("*.json"))
        if len(found) != 1:
            raise DataError(f"{'no' if not found else 'several'} *.json files in {root}; pass --annotations FILE.json")
        path = found[0]
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list) or not isinstance(data.get("database"), dict):
        raise DataError(f"{path}: expected an object with 'labels' (a list) and 'database' (an object)")
    names = tuple(str(c) for c in data["labels"])
    index = _class_index(names, str(path))
    subsets = {"training": "train", "validation": "val", "testing": "test"}
    entries: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    for vid, info in data["database"].items():
        split = subsets.get(str(info.get("subset", ""))) if isinstance(info, dict) else None
        if split is None:
            raise DataError(f"{path}: video {vid!r} has no subset training/validation/testing")
        label = (info.get("annotations") or {}).get("label") if isinstance(info.get("annotations"), dict) else None
        if label is None:
            continue  # unlabelled (the paper's test subsets)
        entries[split].append((str(vid), _label(index, str(label), str(path))))
    finder = _Finder([root])
    splits, missing = {}, {}
    for s, items in entries.items():
        if items:
            # the paper's code keeps videos under root/<label>/<id> (UCF-101, Kinetics) or root/<id> (Jester)
            with_class = [(f"{names[lab]}/{vid}" if finder.find(f"{names[lab]}/{vid}") else vid, lab) for vid, lab in items]
            splits[s], missing[s] = _resolve(finder, with_class, str(path), root, allow_missing)
    notes = []
    if "test" not in splits and "val" in splits:
        notes.append("no labelled testing videos: test is the validation subset")
        splits["test"], missing["test"] = splits["val"], missing["val"]
    return Layout("json", root, names, splits, tuple(notes), missing)


def detect_format(root: Path, annotations: Path | None = None) -> str:
    """Guess the layout of ``root`` from its annotation files, in ``annotations`` (a folder or a file in one) first
    (``folder`` when there are none; a lone ``*.json`` counts only when it has the paper's ``"database"``)."""
    if any(p is not None and p.is_file() and p.suffix == ".json" for p in (root, annotations)):
        return "json"
    given = [] if annotations is None else [annotations if annotations.is_dir() else annotations.parent]
    for d in (*given, root, root / "ucfTrainTestlist", root / "annotations"):
        if (d / "classInd.txt").is_file():
            return "ucf101"
        if any(d.glob("*labels*.csv")) and any(d.glob("*train*.csv")):
            return "jester"
        for c in sorted(d.glob("*.csv")):
            try:
                with c.open(encoding="utf-8-sig") as f:
                    if "youtube_id" in f.readline():
                        return "kinetics"
            except (OSError, UnicodeDecodeError):
                continue  # unreadable or not text: not a Kinetics CSV
        found = list(d.glob("*.json"))
        if len(found) == 1 and _looks_like_annotations(found[0]):
            return "json"
    return "folder"


def _looks_like_annotations(path: Path) -> bool:
    """True when the JSON file ``path`` opens like the paper's annotation file: an object with a ``"database"`` key
    in its first MiB (a stray ``info.json`` beside class folders is not one)."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as f:
            head = f.read(1 << 20)
    except OSError:
        return False
    return head.lstrip().startswith("{") and '"database"' in head


def read_layout(
    root: str | Path, *, format: str | None = None, annotations: str | Path | None = None, fold: int = 1, allow_missing: bool = False
) -> Layout:
    """Read the dataset at ``root`` in layout ``format`` (guessed by :func:`detect_format` when None)."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    ann = Path(annotations).expanduser() if annotations is not None else None
    if path.is_file() and path.suffix == ".json":
        path, ann = path.parent, path
    if ann is not None and not ann.exists():
        raise DataError(f"annotations path {ann} does not exist")
    fmt = format or detect_format(path, ann)
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "folder" and ann is not None:
        others = ", ".join(FORMATS[1:])
        raise DataError(f"--annotations {ann}: the folder layout reads no split lists; name the layout with --format ({others})")
    if not path.is_dir():
        raise DataError(f"data path {path} is not a folder")
    if fmt == "folder":
        layout = read_folder(path)
    elif fmt == "ucf101":
        if not 1 <= fold <= 3:
            raise DataError(f"UCF-101 has folds 1, 2 and 3; got {fold}")
        layout = read_ucf101(path, annotations=ann, fold=fold, allow_missing=allow_missing)
    elif fmt == "jester":
        layout = read_jester(path, annotations=ann, allow_missing=allow_missing)
    elif fmt == "kinetics":
        layout = read_kinetics(path, annotations=ann, allow_missing=allow_missing)
    else:
        layout = read_json(path, annotations=ann, allow_missing=allow_missing)
    if not layout.class_names or not any(layout.splits.values()):
        raise DataError(f"no videos found in {path} ({fmt} layout)")
    return layout


__all__ = ["FORMATS", "IMAGE_EXTENSIONS", "SPLITS", "Layout", "VideoRecord", "detect_format", "read_layout"]
