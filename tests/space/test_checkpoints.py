"""The paper's checkpoints: synthetic ones built from its layer listing load into e3d's presets."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import space
from space.checkpoints import CheckpointError, checkpoint_classes, checkpoint_state, paper_names, read_checkpoint
from tests.conftest import SMALL_CLIP, PaperModel, paper_code_models

PAPER = paper_code_models()
CONV = re.compile(r"^(\S+)\s+Conv3d\s+(\d+)->\s*(\d+) k=\(([\d, ]+)\) s=.* g=(\d+) bias=(\w+)")
BN = re.compile(r"^(\S+)\s+BN3d\((\d+)\)")
LINEAR = re.compile(r"^(\S+)\s+Linear (\d+)->(\d+) bias=True")


def paper_state(paper: PaperModel, *, seed: int = 0, prefix: str = "module.") -> dict[str, Tensor]:
    """Random tensors under the paper code's names and shapes, read off the listing alone."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen) * 0.1

    for line in paper.lines:
        if m := CONV.match(line):
            name, cin, cout, groups = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(5))
            k = [int(v) for v in m.group(4).split(",")]
            state[f"{name}.weight"] = rand(cout, cin // groups, *k)
            if m.group(6) == "True":
                state[f"{name}.bias"] = rand(cout)
        elif m := BN.match(line):
            name, n = m.group(1), int(m.group(2))
            state[f"{name}.weight"] = 1 + rand(n)
            state[f"{name}.bias"] = rand(n)
            state[f"{name}.running_mean"] = rand(n)
            state[f"{name}.running_var"] = 0.5 + torch.rand(n, generator=gen)
            state[f"{name}.num_batches_tracked"] = torch.tensor(1000)
        elif m := LINEAR.match(line):
            name, cin, cout = m.group(1), int(m.group(2)), int(m.group(3))
            state[f"{name}.weight"] = rand(cout, cin)
            state[f"{name}.bias"] = rand(cout)
    return {prefix + k: v for k, v in state.items()}


def save_paper_checkpoint(path: Path, state: dict[str, Tensor]) -> Path:
    """As the paper's training script saved them: epoch, arch, state_dict, optimizer, best_prec1."""
    torch.save({"epoch": 10, "arch": "net", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}, "best_prec1": 0.5}, path)
    return path


def listing_order(paper: PaperModel) -> list[str]:
    """The paper's conv, BatchNorm and linear module names in the listing's order."""
    return [line.split()[0] for line in paper.lines if CONV.match(line) or BN.match(line) or LINEAR.match(line)]


@pytest.mark.parametrize("paper", PAPER, ids=lambda m: f"{m.family}-{m.width}")
def test_every_paper_checkpoint_loads_with_every_key_in_its_place(paper: PaperModel, tmp_path: Path) -> None:
    """All 17 efficient models: each tensor lands in the e3d module at the same position of the
    network (the listing's order zipped with e3d's traced layers, independent of the converter)."""
    state = paper_state(paper)
    path = save_paper_checkpoint(tmp_path / "paper.pth", state)
    model = space.create_model(paper.family, width_mult=paper.width, checkpoint=path)
    loaded = model.state_dict()
    ours = [layer.name for layer in model.spec.layers if layer.kind in ("conv", "bn", "linear")]  # type: ignore[union-attr]
    theirs = listing_order(paper)
    assert len(ours) == len(theirs)
    used = 0
    for e3d_name, paper_name in zip(ours, theirs, strict=True):
        for key in [k for k in loaded if k.rsplit(".", 1)[0] == e3d_name]:
            src = state["module." + paper_name + "." + key.rsplit(".", 1)[1]]
            assert torch.equal(loaded[key], src), (key, paper_name)
            used += 1
    assert used == len(state) == len(loaded)


def test_paper_names_cover_every_layer_of_the_listing() -> None:
    for paper in PAPER:
        spec = space.paper_spec(paper.family, width_mult=paper.width)
        names = paper_names(spec)
        assert [names[layer.name] for layer in spec.layers if layer.kind in ("conv", "bn", "linear")] == listing_order(paper)


class PaperShuffleNetV2(nn.Module):
    """The paper code's 3D ShuffleNetV2 (its names: conv1, maxpool, features.N.banch1/banch2, conv_last,
    classifier), written here from architectures.md as an independent reference."""

    def __init__(self, widths: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, k: int, s: int = 1, g: int = 1, relu: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv3d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm3d(cout)]
            return [*layers, nn.ReLU()] if relu else layers

        self.conv1 = nn.Sequential(*cbr(3, 24, 3, 1))
        self.conv1[0].stride = (1, 2, 2)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        units: list[nn.Module] = []
        cin = 24
        for out, n in zip(widths[:3], (4, 8, 4), strict=True):
            for i in range(n):
                unit = nn.Module()
                half = out // 2
                if i == 0:
                    unit.banch1 = nn.Sequential(*cbr(cin, cin, 3, 2, cin, relu=False), *cbr(cin, half, 1))
                    unit.banch2 = nn.Sequential(*cbr(cin, half, 1), *cbr(half, half, 3, 2, half, relu=False), *cbr(half, half, 1))
                else:
                    unit.banch2 = nn.Sequential(*cbr(half, half, 1), *cbr(half, half, 3, 1, half, relu=False), *cbr(half, half, 1))
                units.append(unit)
                cin = out
        self.features = nn.ModuleList(units)
        self.conv_last = nn.Sequential(*cbr(cin, widths[3], 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(widths[3], num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        for unit in self.features:
            if hasattr(unit, "banch1"):
                x = torch.cat((unit.banch1(x), unit.banch2(x)), 1)
            else:
                x1, x2 = x.chunk(2, 1)
                x = torch.cat((x1, unit.banch2(x2)), 1)
            n, c, t, h, w = x.shape
            x = x.view(n, 2, c // 2, t, h, w).transpose(1, 2).reshape(n, c, t, h, w)
        x = self.conv_last(x)
        x = nn.functional.avg_pool3d(x, x.shape[-3:]).flatten(1)
        return self.classifier(x)  # type: ignore[no-any-return]


@pytest.mark.parametrize("width", [0.25, 1.0])
def test_converted_model_computes_what_the_paper_model_computes(width: float, tmp_path: Path) -> None:
    paper = next(p for p in PAPER if p.family == "shufflenetv2" and p.width == width)
    state = paper_state(paper, prefix="")
    widths = {0.25: (32, 64, 128, 1024), 1.0: (116, 232, 464, 1024)}[width]
    reference = PaperShuffleNetV2(widths, 600)
    reference.load_state_dict(state, strict=True)  # the paper-named model, loaded directly
    path = save_paper_checkpoint(tmp_path / "p.pth", {"module." + k: v for k, v in state.items()})
    ours = space.create_model("shufflenetv2", width_mult=width, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0], checkpoint=path)
    x = torch.randn(2, 3, *SMALL_CLIP)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), rtol=1e-5, atol=1e-5)


def _mobilenet() -> PaperModel:
    return next(p for p in PAPER if p.family == "mobilenet" and p.width == 0.5)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda s: s.pop("module.features.3.conv2.weight"), "missing key for mobilenet .*: features.3.conv2.weight"),
        (lambda s: s.__setitem__("module.features.99.conv1.weight", torch.zeros(1)), "unexpected key for .*: features.99.conv1.weight"),
        (lambda s: s.__setitem__("module.features.2.bn1.weight", torch.zeros(3)), r"features.2.bn1.weight has shape \(3,\) but"),
        (lambda s: s.__setitem__("module.classifier.1.weight", torch.zeros(27, 512)), "the checkpoint has 27 classes, the model 600"),
    ],
)
def test_a_key_that_does_not_fit_is_an_error_naming_it(tmp_path: Path, edit: object, words: str) -> None:
    state = paper_state(_mobilenet())
    edit(state)  # type: ignore[operator]
    path = save_paper_checkpoint(tmp_path / "bad.pth", state)
    with pytest.raises(CheckpointError, match=words):
        space.create_model("mobilenet", width_mult=0.5, checkpoint=path)


def test_a_wrong_width_is_an_error(tmp_path: Path) -> None:
    path = save_paper_checkpoint(tmp_path / "m.pth", paper_state(_mobilenet()))
    with pytest.raises(CheckpointError, match="has shape"):
        space.create_model("mobilenet", width_mult=1.0, checkpoint=path)


def test_old_checkpoints_without_num_batches_tracked_load(tmp_path: Path) -> None:
    state = {k: v for k, v in paper_state(_mobilenet()).items() if not k.endswith("num_batches_tracked")}
    model = space.create_model("mobilenet", width_mult=0.5, checkpoint=save_paper_checkpoint(tmp_path / "old.pth", state))
    assert int(model.state_dict()["stem.conv_bn.num_batches_tracked"]) == 0


def test_a_pickle_that_needs_more_than_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": paper_state(_mobilenet()), "opt": argparse.Namespace(arch="mobilenet")}, path)
    with pytest.raises(CheckpointError, match=r"refused: it needs more than tensors .*\(argparse.Namespace\).* arbitrary code"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such checkpoint file"),
        (b"not a checkpoint", "not a readable PyTorch"),
        (b"hello", "not a readable PyTorch checkpoint (unpickling failed: KeyError: 101)"),
        (b"abc", "not a readable PyTorch checkpoint (unpickling failed: IndexError"),
    ],
)
def test_unreadable_files_are_one_clear_error(tmp_path: Path, content: bytes | None, words: str) -> None:
    path = tmp_path / "x.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(path)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_torchscript_file_is_named_as_such_without_torch_s_warning(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), path)
    recwarn.clear()
    with pytest.raises(CheckpointError, match="is a TorchScript model, not a checkpoint"):
        read_checkpoint(path)
    assert not recwarn.list


def test_a_0_d_classifier_has_no_classes_and_does_not_fit() -> None:
    state = paper_state(_mobilenet())
    state["module.classifier.1.weight"] = state["module.classifier.1.bias"] = torch.tensor(3.0)
    assert checkpoint_classes({"state_dict": state}) is None
    with pytest.raises(CheckpointError, match=r"classifier.1.weight has shape \(\) but the model's head.fc.weight needs"):
        checkpoint_state({"state_dict": state}, space.paper_spec("mobilenet", width_mult=0.5))


def test_an_empty_state_dict_is_called_empty() -> None:
    spec = space.paper_spec("mobilenet", width_mult=0.5)
    with pytest.raises(CheckpointError, match=r"x\.pth: its 'state_dict' entry is empty: there are no weights in it"):
        checkpoint_state({"state_dict": {}}, spec, source="x.pth")  # was "expected a state_dict ... or a dict with a 'state_dict' entry"
    with pytest.raises(CheckpointError, match=r"x\.pth: its state dict is empty: there are no weights in it"):
        checkpoint_state({}, spec, source="x.pth")


def test_a_classifier_of_other_classes_names_the_callers_option() -> None:
    state = paper_state(_mobilenet())
    spec = space.paper_spec("mobilenet", width_mult=0.5, num_classes=27)
    with pytest.raises(CheckpointError, match=r"the checkpoint has 600 classes, the model 27 \(set --num-classes\)"):
        checkpoint_state({"state_dict": state}, spec, classes_option="--num-classes")


def test_families_without_paper_checkpoints_are_an_error() -> None:
    with pytest.raises(CheckpointError, match="no paper checkpoint mapping for family 'resnet18'"):
        checkpoint_state({"state_dict": {"conv1.weight": torch.zeros(1)}}, space.paper_spec("resnet18"))


def test_e3d_state_dicts_load_too_and_are_checked(tmp_path: Path) -> None:
    src = space.create_model("mobilenet", width_mult=0.5)
    path = tmp_path / "e3d.pth"
    torch.save(src.state_dict(), path)
    model = space.create_model("mobilenet", width_mult=0.5, checkpoint=path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values(), strict=True))
    state = src.state_dict()
    del state["head.fc.bias"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing key for .*: head\.fc\.bias"):
        space.create_model("mobilenet", width_mult=0.5, checkpoint=path)
