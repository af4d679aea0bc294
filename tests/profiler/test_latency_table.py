"""Latency tables: grouping, building (resumable), JSON round trip, pricing, regression and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiler.latency_table import (
    LatencyTable,
    LatencyTableError,
    Op,
    Overhead,
    TableSettings,
    UnpricedLayerError,
    build_table,
    collect_ops,
    design_sample,
    fit_overhead,
    measure_op,
    measure_spec,
    predicted_latency,
    priced_ops,
)
from space.registry import paper_spec
from space.spec import NetSpec

CLIP = (16, 48, 48)


def settings(**kw: object) -> TableSettings:
    base: dict[str, object] = {
        "device": "cpu",
        "device_name": "test cpu",
        "threads": 1,
        "torch_version": "x",
        "precision": "fp32",
        "clip": CLIP,
        "batch_size": 1,
        "modes": ("eager", "optimized"),
        "warmup": 0,
        "repeats": 1,
    }
    return TableSettings(**{**base, **kw})  # type: ignore[arg-type]


def fake_ms(op: Op, s: TableSettings, mode: str) -> float:
    """A deterministic 'measurement': linear in the regression's features, different per path."""
    return 0.01 + op.macs / 1e6 * (0.5 if mode == "eager" else 0.25) + op.elements / 1e6


def spec(name: str = "mobilenetv2", width: float = 0.45) -> NetSpec:
    return paper_spec(name, width_mult=width).replace(clip=CLIP)


def fake_table(tmp_path: Path, specs: list[NetSpec], **kw: object) -> LatencyTable:
    ops = list(collect_ops(specs).values())
    return build_table(ops, settings(), tmp_path / "t.json", measure=fake_ms, progress=False, **kw)  # type: ignore[arg-type]


def test_priced_ops_group_each_conv_with_its_bn_and_activation() -> None:
    ops = priced_ops(spec().layers)
    assert ops[0].kinds == ("conv", "bn", "relu6") and ops[0].in_shape == (3, *CLIP)
    assert ("conv", "bn") in {o.kinds for o in ops}  # the linear projection of an inverted residual
    assert all("dropout" not in o.kinds and o.kinds[0] != "bn" for o in ops)
    assert {"add", "gap", "flatten", "linear"} <= {o.kinds[0] for o in ops}
    assert sum(len(o.kinds) for o in ops) == sum(1 for layer in spec().layers if layer.kind != "dropout")


def test_op_round_trips_and_keys_are_distinct() -> None:
    ops = collect_ops([spec(), spec("shufflenet", 1.0), spec("squeezenet", 1.0)])
    assert all(Op.from_dict(json.loads(json.dumps(op.to_dict()))) == op for op in ops.values())
    assert len({op.key for op in ops.values()}) == len(ops)
    dw = next(o for o in ops.values() if o.kinds[0] == "conv" and o.groups > 1 and o.groups == o.in_shape[0])
    assert "|dw|" in dw.cls and "|dw|" in dw.key


def test_build_round_trips_through_json(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec()])
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.complete and loaded.settings == table.settings
    assert {k: ms for k, (_, ms) in loaded.entries.items()} == {k: ms for k, (_, ms) in table.entries.items()}
    assert loaded.fingerprint() == table.fingerprint() and loaded.identity()["entries"] == len(table.entries)
    assert not list(tmp_path.glob(".t.json.*"))  # no temporary file left behind


def test_predictor_sums_known_entries_exactly(tmp_path: Path) -> None:
    s = spec()
    table = fake_table(tmp_path, [s])
    for mode in ("eager", "optimized"):
        expected = sum(fake_ms(op, table.settings, mode) for op in priced_ops(s.layers))
        assert table.predict(s, mode) == pytest.approx(expected, rel=1e-12)
        assert table.overhead(mode) == Overhead()  # no calibration networks: nothing added


def test_overhead_is_fitted_on_calibration_networks(tmp_path: Path) -> None:
    nets = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)]

    def whole(s: NetSpec, st: TableSettings, mode: str) -> float:
        return 3.0 + 2.0 * sum(fake_ms(op, st, mode) for op in priced_ops(s.layers))

    table = fake_table(tmp_path, nets, calibration=nets, measure_network=whole)
    o = table.overhead("eager")
    assert (o.const_ms, o.scale, o.networks) == (pytest.approx(3.0, rel=1e-6), pytest.approx(2.0, rel=1e-6), 4)
    assert table.predict(nets[1], "eager") == pytest.approx(whole(nets[1], table.settings, "eager"), rel=1e-6)
    assert LatencyTable.load(tmp_path / "t.json").overhead("eager") == o  # networks are stored with the table


def test_fit_overhead_falls_back_to_a_ratio() -> None:
    assert fit_overhead([]) == Overhead()
    assert fit_overhead([(10.0, 20.0), (5.0, 12.0)]) == Overhead(0.0, 2.2, 2)  # median of 2.0 and 2.4
    flat = fit_overhead([(1.0, 5.0), (2.0, 5.0), (3.0, 5.0), (4.0, 5.0)])  # no growth with the sum: only a ratio
    assert flat.const_ms == 0.0 and flat.scale > 0


def test_unknown_operations_raise(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec()])
    with pytest.raises(UnpricedLayerError, match="no entries of that operation"):
        table.predict(spec("shufflenet", 1.0))  # grouped convs and shuffles were never measured
    op = next(o for o in priced_ops(spec().layers) if o.kinds == ("add",))
    huge = Op(op.kinds, (op.in_shape[0] * 1000, *op.in_shape[1:]), (op.out_shape[0] * 1000, *op.out_shape[1:]))
    with pytest.raises(UnpricedLayerError, match="outside the measured range"):
        table.price(huge, "eager")
    with pytest.raises(LatencyTableError, match="no optimized"):
        LatencyTable(settings(modes=("eager",))).predict(spec(), "optimized")


def test_regression_interpolates_inside_the_measured_range(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec("mobilenetv2", w) for w in (0.2, 1.0)])
    unseen = [op for op in priced_ops(spec("mobilenetv2", 0.45).layers) if op.key not in table.entries]
    priced = 0
    for op in unseen:  # the fake times are linear in the features: the fit recovers them where it may interpolate
        try:
            value = table.price(op, "eager")
        except UnpricedLayerError:
            continue
        assert value == pytest.approx(fake_ms(op, table.settings, "eager"), rel=1e-6)
        priced += 1
    assert priced >= len(unseen) // 2, "the 0.45x network's operations lie mostly between the 0.2x and 1.0x ones"


def test_resume_does_not_remeasure(tmp_path: Path) -> None:
    ops = list(collect_ops([spec()]).values())
    calls: list[str] = []

    def stops_after_five(op: Op, s: TableSettings, mode: str) -> float:
        if len(calls) == 10:  # five operations, two paths each
            raise KeyboardInterrupt
        calls.append(op.key)
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        build_table(ops, settings(), tmp_path / "t.json", measure=stops_after_five, progress=False)
    partial = LatencyTable.load(tmp_path / "t.json", complete=False)
    assert len(partial.entries) == 5 and not partial.complete
    with pytest.raises(LatencyTableError, match=r"incomplete \(5 of \d+ operations"):
        LatencyTable.load(tmp_path / "t.json")
    calls.clear()

    def counting(op: Op, s: TableSettings, mode: str) -> float:
        calls.append(op.key)
        return 1.0

    table = build_table(ops, settings(), tmp_path / "t.json", measure=counting, progress=False)
    assert len(calls) == 2 * (len(ops) - 5) and not set(calls) & set(partial.entries)
    assert table.complete and len(table.entries) == len(ops)
    calls.clear()
    build_table(ops, settings(), tmp_path / "t.json", measure=counting, progress=False)
    assert calls == []


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    fake_table(tmp_path, [spec()])
    with pytest.raises(LatencyTableError, match=r"other settings: clip 16x48x48 \(asked 16x56x56\), batch_size 1 \(asked 2\)"):
        build_table([], settings(clip=(16, 56, 56), batch_size=2), tmp_path / "t.json", measure=fake_ms, progress=False)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda text: text[: len(text) // 2], "corrupt or truncated JSON"),
        (lambda text: "", "corrupt or truncated JSON"),
        (lambda text: text.replace('"kinds"', '"kindz"', 1), "corrupt latency table"),
        (lambda text: text.replace('"eager": ', '"eager": "fast", "x": ', 1), "corrupt latency table"),
        (lambda text: text.replace("e3d-latency-table/1", "other/2"), "schema"),
    ],
)
def test_corrupt_tables_are_one_line_errors(tmp_path: Path, mangle: object, message: str) -> None:
    fake_table(tmp_path, [spec()])
    bad = tmp_path / "bad.json"
    bad.write_text(mangle((tmp_path / "t.json").read_text()))  # type: ignore[operator]
    with pytest.raises(LatencyTableError, match=message) as e:
        LatencyTable.load(bad)
    assert "\n" not in str(e.value)


def test_check_names_every_mismatch(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec()])
    table.check(clip=CLIP, batch_size=1, precision="fp32", mode="optimized")
    with pytest.raises(LatencyTableError, match=r"clip 16x48x48 \(asked 16x112x112\), batch 1 \(asked 8\), precision fp32 \(asked bf16\)"):
        table.check(clip=(16, 112, 112), batch_size=8, precision="bf16")
    with pytest.raises(LatencyTableError, match="prices an e3d network"):
        predicted_latency(tmp_path / "t.json", None, batch_size=1)
    assert predicted_latency(tmp_path / "t.json", spec(), batch_size=1)["latency_predicted_ms"] > 0


def test_design_sample_keeps_extremes_and_presets() -> None:
    ops = collect_ops([spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)])
    keep = collect_ops([spec("mobilenetv2", 0.7)])
    chosen = {op.key for op in design_sample(ops, 1, keep=keep)}
    assert set(keep) <= chosen < set(ops)
    for cls in {op.cls for op in ops.values()}:
        members = [op for op in ops.values() if op.cls == cls]
        for feature in (0, 1):
            lo = min(members, key=lambda o: o.features[feature]).features[feature]
            assert any(ops[k].cls == cls and ops[k].features[feature] == lo for k in chosen)
    assert len(design_sample(ops, len(ops))) == len(ops)


def test_settings_refuse_the_optimized_path_off_cpu_fp32() -> None:
    with pytest.raises(LatencyTableError, match="CPU fp32 only"):
        settings(device="cuda:0")
    with pytest.raises(LatencyTableError, match="CPU fp32 only"):
        settings(precision="bf16")
    assert settings(device="cuda:0", modes=("eager",)).device == "cuda:0"  # the CUDA table: eager only
    with pytest.raises(LatencyTableError, match="unknown precision"):
        settings(precision="fp8")
    from profiler.latency import DeviceError

    with pytest.raises(DeviceError):
        TableSettings.here(device="cuda:7")


@pytest.mark.usefixtures("one_torch_thread")
def test_real_measurements_on_both_paths(tmp_path: Path) -> None:
    s = paper_spec("shufflenetv2", width_mult=0.25).replace(clip=CLIP)
    ops = list(collect_ops([s]).values())
    kinds = {"conv", "cat", "split", "shuffle", "linear", "flatten", "maxpool"}
    picked = [next(op for op in ops if op.kinds[0] == k) for k in sorted(kinds)]
    st = settings(repeats=2, warmup=1)
    for op in picked:
        for mode in st.modes:
            assert measure_op(op, st, mode) > 0
    assert measure_spec(s, st, "eager") > 0


def test_an_operation_the_device_cannot_run_is_one_line(tmp_path: Path) -> None:
    def fails(op: Op, s: TableSettings, mode: str) -> float:
        raise NotImplementedError("\"avg_pool3d_out_frame\" not implemented for 'BFloat16'\nmore")

    ops = list(collect_ops([spec()]).values())[:3]
    with pytest.raises(LatencyTableError, match=r"cannot time conv.*\(fp32 on cpu, eager\): \"avg_pool3d_out_frame\" not implemented") as e:
        build_table(ops, settings(), tmp_path / "t.json", measure=fails, progress=False)
    assert "\n" not in str(e.value) and not LatencyTable.load(tmp_path / "t.json", complete=False).complete


def test_accuracy_of_known_rows() -> None:
    from profiler.latency_table import Comparison, accuracy

    rows = [
        Comparison("a", "random", "mobilenet", "eager", 10, 10.0, 10.0),
        Comparison("b", "random", "mobilenet", "eager", 20, 22.0, 20.0),  # +10%: within
        Comparison("c", "table8", "mobilenet", "eager", 40, 24.0, 30.0),  # -20%
        Comparison("d", "table8", "mobilenet", "eager", 30, 48.0, 40.0),  # +20%; macs rank it below c
        Comparison("e", "random", "mobilenet", "eager", 50, None, None),  # unpriced
    ]
    a = accuracy(rows)
    assert (a.networks, a.unpriced) == (4, 1)
    assert a.spearman == pytest.approx(1.0) and a.macs_spearman == pytest.approx(0.8)
    assert a.mape == pytest.approx(12.5) and a.within_10 == pytest.approx(50.0)
    assert accuracy(rows[-1:]).networks == 0


def test_compare_predicts_and_measures_every_path(tmp_path: Path) -> None:
    from profiler.latency_table import compare

    table = fake_table(tmp_path, [spec()])
    measured: list[str] = []

    def whole(s: NetSpec, st: TableSettings, mode: str) -> float:
        measured.append(mode)
        return 1.0

    rows = compare(table, [("mnv2", "table8", spec()), ("shuffle", "random", spec("shufflenet", 1.0))], measure=whole, progress=False)
    assert [(r.name, r.mode) for r in rows] == [("mnv2", "eager"), ("mnv2", "optimized"), ("shuffle", "eager"), ("shuffle", "optimized")]
    assert rows[0].predicted_ms == table.predict(spec(), "eager") and rows[0].measured_ms == 1.0
    assert rows[2].predicted_ms is None and rows[2].measured_ms is None  # unpriced: not measured
    assert measured == ["eager", "optimized"]


def test_channel_shuffle_keeps_its_groups() -> None:
    s = paper_spec("shufflenet", width_mult=1.0).replace(clip=CLIP)  # 3 groups
    shuffles = [op for op in priced_ops(s.layers) if op.kinds == ("shuffle",)]
    assert shuffles and {op.groups for op in shuffles} == {3}
    odd = Op(("shuffle",), (21, 2, 3, 3), (21, 2, 3, 3), groups=3)  # 21 channels: 2 groups could not shuffle them
    assert measure_op(odd, settings(repeats=1), "eager") > 0
