"""The paper's presets: faithful to Table 8 and to the paper's code, buildable at any width."""

from __future__ import annotations

import re

import pytest
import torch

import space
from profiler import count_spec
from tests.conftest import ALL_MODELS, SMALL_CLIP, paper_code_models, preset_widths

TABLE8 = space.table8()


def test_registry_has_the_papers_names() -> None:
    assert set(space.list_models()) == {
        "squeezenet", "mobilenet", "mobilenetv2", "shufflenet", "shufflenetv2", "resnet18", "resnet50", "resnet101", "resnext101",
        "sevnet",
    }  # fmt: skip


def test_table8_is_packaged_with_21_rows() -> None:
    assert len(TABLE8) == 21
    assert {r.model for r in TABLE8} == set(space.list_models()) - {"sevnet"}


@pytest.mark.parametrize("row", TABLE8, ids=lambda r: f"{r.model}-{r.width_mult}")
def test_params_within_1_percent_of_table8(row: space.PaperRow) -> None:
    spec = space.paper_spec(row.model, width_mult=row.width_mult)
    params = count_spec(spec).params
    assert abs(params / 1e6 / row.params_m - 1) < 0.01, (params, row.params_m)


def _conv_line(line: str) -> tuple[object, ...] | None:
    m = re.search(
        r"Conv3d\s+(\d+)->\s*(\d+) k=\(([\d, ]+)\) s=\(([\d, ]+)\) p=\(([\d, ]+)\) g=(\d+) bias=(\w+)\s+in=\(([\d, ]+)\) out=\(([\d, ]+)\)",
        line,
    )
    if not m:
        return None
    nums = [tuple(int(v) for v in m.group(i).split(",")) for i in (3, 4, 5, 8, 9)]
    return ("conv", int(m.group(1)), int(m.group(2)), *nums[:3], int(m.group(6)), m.group(7) == "True", *nums[3:])


def _paper_layers(lines: tuple[str, ...]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for line in lines:
        if (conv := _conv_line(line)) is not None:
            out.append(conv)
        elif m := re.search(r"BN3d\((\d+)\) eps=1e-05 mom=0.1", line):
            out.append(("bn", int(m.group(1))))
        elif m := re.search(r"Linear (\d+)->(\d+) bias=True", line):
            out.append(("linear", int(m.group(1)), int(m.group(2))))
        elif m := re.search(r"(MaxPool3d|AvgPool3d) k=(.+?) s=(.+?) p=(.+?)\s+in=\(([\d, ]+)\) out=\(([\d, ]+)\)", line):
            out.append((m.group(1), tuple(int(v) for v in m.group(6).split(","))))
        elif m := re.search(r"Dropout\(p=([\d.]+)\)", line):
            out.append(("dropout", float(m.group(1))))
    return out


def _our_layers(spec: space.NetSpec) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for layer in spec.layers:
        if layer.kind == "conv":
            cin, cout = layer.in_shape[0], layer.out_shape[0]
            out.append(
                ("conv", cin, cout, layer.kernel, layer.stride, layer.padding, layer.groups, layer.bias, layer.in_shape, layer.out_shape)
            )
        elif layer.kind == "bn":
            out.append(("bn", layer.out_shape[0]))
        elif layer.kind == "linear":
            out.append(("linear", layer.in_shape[0], layer.out_shape[0]))
        elif layer.kind in ("maxpool", "avgpool"):
            out.append(({"maxpool": "MaxPool3d", "avgpool": "AvgPool3d"}[layer.kind], layer.out_shape))
        elif layer.kind == "gap" and spec.head.kind == "conv":
            out.append(("AvgPool3d", layer.out_shape))
        elif layer.kind == "dropout":
            out.append(("dropout", layer.p))
    return out


@pytest.mark.parametrize("paper", paper_code_models(), ids=lambda m: f"{m.family}-{m.width}")
def test_preset_is_the_papers_code_layer_by_layer(paper: object) -> None:
    """Same parameter count to the unit and the same conv/BN/linear layers in the same order with the
    same channels, kernels, strides, paddings, groups, biases and shapes; same pools and dropout."""
    spec = space.paper_spec(paper.family, width_mult=paper.width)  # type: ignore[attr-defined]
    assert count_spec(spec).params == paper.params  # type: ignore[attr-defined]
    theirs, ours = _paper_layers(paper.lines), _our_layers(spec)  # type: ignore[attr-defined]
    key = lambda layers: [x for x in layers if x[0] in ("conv", "bn", "linear")]  # noqa: E731
    assert key(ours) == key(theirs)
    pools = lambda layers: sorted(x for x in layers if x[0] in ("MaxPool3d", "AvgPool3d"))  # noqa: E731
    assert pools(ours) == pools(theirs)
    assert [x for x in ours if x[0] == "dropout"] == [x for x in theirs if x[0] == "dropout"]


@pytest.mark.parametrize(("name", "width"), preset_widths())
def test_forward_and_backward_on_a_small_clip(name: str, width: float) -> None:
    model = space.create_model(name, width_mult=width, num_classes=7, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    x = torch.randn(2, 3, *SMALL_CLIP)
    y = model(x)
    assert y.shape == (2, 7)
    y.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_json_round_trip_rebuilds_an_identical_model(name: str, tmp_path: object) -> None:
    spec = space.paper_spec(name, width_mult=0.5, num_classes=5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    path = tmp_path / "spec.json"  # type: ignore[operator]
    spec.save(path)
    again = space.NetSpec.load(path)
    assert again == spec and hash(again) == hash(spec)
    a, b = space.build(spec).eval(), space.build(again).eval()
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, *SMALL_CLIP)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_module_runs_exactly_once_per_forward(name: str) -> None:
    """One module per call keeps module-based counting equal to the traced layers."""
    with torch.device("meta"):
        model = space.create_model(name, width_mult=0.5, sample_size=SMALL_CLIP[1], sample_duration=SMALL_CLIP[0])
    calls: dict[str, int] = {}
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1)) for n, m in leaves]
    model.eval()(torch.zeros(1, 3, *SMALL_CLIP, device="meta"))
    for h in hooks:
        h.remove()
    assert calls == {n: 1 for n, _ in leaves}


SHUFFLENET_COUNTS = {
    (1, 0.5): (72143488, 424636), (1, 1.0): (185873344, 1304632), (2, 0.5): (72913248, 500684), (2, 1.0): (187714144, 1447144),
    (3, 0.5): (71960832, 545772), (3, 1.0): (187711104, 1521504), (4, 0.5): (72831744, 583092), (4, 1.0): (187446848, 1578104),
    (8, 0.5): (89940480, 735144), (8, 1.0): (195531264, 1883472),
}  # fmt: skip
"""(multiply-adds, parameters) of ShuffleNetV1 at 16x112x112 per (groups, width), counted before it had an expansion knob."""


@pytest.mark.parametrize(("groups", "width"), SHUFFLENET_COUNTS)
def test_shufflenet_at_expansion_1_is_the_network_it_was_before_the_knob(groups: int, width: float) -> None:
    spec = space.families.shufflenet(groups=groups, width_mult=width)
    assert space.families.shufflenet(groups=groups, width_mult=width, expansions=[1.0, 1.0, 1.0]) == spec
    assert [s.expansion for s in spec.stages] == [1.0, 1.0, 1.0]
    totals = count_spec(spec)
    assert (totals.macs, totals.params) == SHUFFLENET_COUNTS[groups, width]
    pw1 = [(layer.name, layer.out_shape[0]) for layer in spec.layers if layer.name.endswith(".pw1")]
    assert pw1 == [(f"stages.{i}.{j}.pw1", s.channels // 4) for i, s in enumerate(spec.stages) for j in range(s.repeats)]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_a_width_whose_channel_counts_overflow_is_a_spec_error_naming_width_mult(name: str) -> None:
    with pytest.raises(space.SpecError, match="width_mult: too large"):
        space.paper_spec(name, width_mult=1e307)


def test_infinite_stage_mults_are_refused() -> None:
    with pytest.raises(space.SpecError, match=r"stage_mults\[1\]"):
        space.families.mobilenet(stage_mults=[1.0, float("inf"), 1.0, 1.0, 1.0])
