"""Latency tables: blocks, building (resumable), JSON round trip, pricing, regression and errors."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from profiler.latency_table import (
    RECHECK_ROUNDS,
    REPEAT_NETWORKS,
    SIZE_TERM_ENTRIES,
    Block,
    LatencyTable,
    LatencyTableError,
    Overhead,
    Repeat,
    TableSettings,
    UnpricedLayerError,
    build_table,
    collect_blocks,
    design_sample,
    fit_overhead,
    measure_block,
    measure_call,
    measure_spec,
    predicted_latency,
    recalibrate,
    spec_blocks,
)
from space.registry import paper_spec
from space.spec import NetSpec

CLIP = (16, 48, 48)
CALL = {"eager": 0.001, "optimized": 0.004}
"""Made-up cost of calling an empty module, per path."""


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


def fake_ms(b: Block, s: TableSettings, mode: str) -> float:
    """A deterministic 'measurement': linear in the regression's features, different per path."""
    return CALL[mode] + 0.01 + b.macs / 1e6 * (0.5 if mode == "eager" else 0.25) + b.elements / 1e6


def fake_call(s: TableSettings, mode: str) -> float:
    return CALL[mode]


def spec(name: str = "mobilenetv2", width: float = 0.45) -> NetSpec:
    return paper_spec(name, width_mult=width).replace(clip=CLIP)


def fake_table(tmp_path: Path, specs: list[NetSpec], **kw: object) -> LatencyTable:
    blocks = list(collect_blocks(specs).values())
    kw = {"measure": fake_ms, **kw}
    return build_table(blocks, settings(), tmp_path / "t.json", measure_empty=fake_call, progress=False, **kw)  # type: ignore[arg-type]


def own_time(b: Block, mode: str) -> float:
    """What a block adds to a network: its time alone less the empty call."""
    return fake_ms(b, settings(), mode) - CALL[mode]


def test_blocks_are_the_units_of_the_spec() -> None:
    from profiler.counting import spec_totals

    s = spec()
    blocks = spec_blocks(s)
    assert [b.fn for b in blocks] == ["stem", *["inverted_residual"] * (len(blocks) - 2), "head"]
    assert blocks[0].in_shape == (3, *CLIP) and blocks[1].in_shape[0] == blocks[0].out_shape[0]
    assert sum(b.macs for b in blocks) == spec_totals(s).macs > 0
    distinct = collect_blocks([s])
    assert len(distinct) < len(blocks)  # a stage's repeated unit is one block
    assert {b.key for b in blocks} == set(distinct)


def test_blocks_round_trip_and_keys_are_distinct() -> None:
    blocks = collect_blocks([spec(), spec("shufflenet", 1.0), spec("squeezenet", 1.0), spec("resnet18", 1.0)])
    assert all(Block.from_dict(json.loads(json.dumps(b.to_dict()))) == b for b in blocks.values())
    assert all(Block.from_dict(json.loads(json.dumps(b.to_dict()))).key == k for k, b in blocks.items())
    assert len({b.cls for b in blocks.values()}) < len(blocks)
    irs = [b for b in blocks.values() if b.fn == "inverted_residual"]
    strided = [b for b in irs if dict(zip(b.names, b.values, strict=True))["stride"] != (1, 1, 1)]
    plain = [b for b in irs if b not in strided]
    assert strided and plain and {b.cls for b in strided}.isdisjoint(b.cls for b in plain)


def test_a_block_stored_before_it_gained_an_argument_keeps_its_key() -> None:
    """ShuffleNetV1 units gained ``expansion`` (its bottleneck width, 1.0 as before): an entry stored
    without it is the same block, under the key a spec's unit has today (a published table still prices it)."""
    blocks = [b for b in collect_blocks([spec("shufflenet", 1.0)]).values() if b.fn == "shuffle_v1"]
    for b in blocks:
        stored = b.to_dict()
        del stored["args"]["expansion"]
        assert Block.from_dict(json.loads(json.dumps(stored))).key == b.key
    stored = {**blocks[0].to_dict(), "args": {**blocks[0].to_dict()["args"], "bogus": 1}}
    with pytest.raises(ValueError, match="unexpected keyword argument"):  # an argument no stage has: still a corrupt entry
        Block.from_dict(stored)


def test_build_round_trips_through_json(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec()])
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.complete and loaded.settings == table.settings and loaded.call_ms == CALL
    assert {k: ms for k, (_, ms) in loaded.entries.items()} == {k: ms for k, (_, ms) in table.entries.items()}
    assert [b for b, _ in loaded.entries.values()] == [b for b, _ in table.entries.values()]
    assert loaded.fingerprint() == table.fingerprint() and loaded.identity()["entries"] == len(table.entries)
    assert not list(tmp_path.glob(".t.json.*"))  # no temporary file left behind


def test_predictor_sums_known_block_entries_exactly(tmp_path: Path) -> None:
    s = spec()
    table = fake_table(tmp_path, [s])
    for mode in ("eager", "optimized"):
        expected = CALL[mode] + sum(own_time(b, mode) for b in spec_blocks(s))
        assert table.predict(s, mode) == pytest.approx(expected, rel=1e-12)
        assert table.overhead(mode) == Overhead()  # no calibration networks: nothing added


def test_overhead_is_fitted_on_calibration_networks(tmp_path: Path) -> None:
    nets = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)]

    def whole(s: NetSpec, st: TableSettings, mode: str) -> float:
        return 2.0 * (CALL[mode] + sum(own_time(b, mode) for b in spec_blocks(s)))

    table = fake_table(tmp_path, nets, calibration=nets, measure_network=whole)
    o = table.overhead("eager")
    assert (o.scale, o.networks) == (pytest.approx(2.0, rel=1e-6), 4)
    assert table.predict(nets[1], "eager") == pytest.approx(whole(nets[1], table.settings, "eager"), rel=1e-6)
    assert LatencyTable.load(tmp_path / "t.json").overhead("eager") == o  # networks are stored with the table


def test_overhead_is_fitted_per_family_when_the_family_has_enough_networks(tmp_path: Path) -> None:
    v2 = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)]
    v1 = [spec("mobilenet", w) for w in (0.5, 0.75, 1.0, 1.5)]
    shuffle = [spec("shufflenet", 0.5)]  # one network: too few for a fit of its own
    scale = {"mobilenetv2": 2.0, "mobilenet": 1.5, "shufflenet": 3.0}

    def whole(s: NetSpec, st: TableSettings, mode: str) -> float:
        return scale[s.family] * (CALL[mode] + sum(own_time(b, mode) for b in spec_blocks(s)))

    nets = [*v2, *v1, *shuffle]
    table = fake_table(tmp_path, nets, calibration=nets, measure_network=whole)
    for s in (v2[1], v1[2]):
        assert table.predict(s, "eager") == pytest.approx(whole(s, table.settings, "eager"), rel=1e-6)
    assert table.overhead("eager", "shufflenet") == table.overhead("eager") != table.overhead("eager", "mobilenet")
    assert table.overhead("eager", "mobilenet").networks == 4 and table.overhead("eager").networks == 9


def test_a_calibration_network_the_table_cannot_price_is_left_out_of_the_fit(tmp_path: Path) -> None:
    v2 = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)]
    foreign = spec("shufflenet", 1.0)  # none of its blocks is in the table, nor any of their kind

    def whole(s: NetSpec, st: TableSettings, mode: str) -> float:
        return 100.0 if s.family == "shufflenet" else 2.0 * (CALL[mode] + sum(own_time(b, mode) for b in spec_blocks(s)))

    table = fake_table(tmp_path, v2, calibration=[*v2, foreign], measure_network=whole)
    assert len(table.networks) == 5
    o = table.overhead("eager")
    assert (o.scale, o.networks) == (pytest.approx(2.0, rel=1e-6), 4)
    with pytest.raises(UnpricedLayerError):
        table.predict(foreign, "eager")


def test_fit_overhead_is_the_median_ratio() -> None:
    assert fit_overhead([]) == Overhead()
    assert fit_overhead([(10.0, 20.0), (5.0, 12.0), (0.0, 3.0)]) == Overhead(2.2, 2)  # median of 2.0 and 2.4
    stalled = [(100.0, 105.0), (200.0, 190.0), (300.0, 310.0), (2400.0, 380.0)]  # one sum inflated by a stalled block
    assert fit_overhead(stalled).scale == pytest.approx(1.0, abs=0.05)


def test_a_stalled_block_is_timed_again(tmp_path: Path) -> None:
    """One reading 50x slow (a stall) is replaced by the next; a block truly 3x its kind keeps 3x, re-timed."""
    s = spec()
    blocks = [b for b in collect_blocks([s]).values() if b.fn == "inverted_residual"]
    stalled, slow = blocks[1].key, blocks[2].key
    calls: dict[str, int] = {}

    def measure(b: Block, st: TableSettings, mode: str) -> float:
        calls[b.key] = calls.get(b.key, 0) + 1
        first = calls[b.key] <= len(st.modes)
        return fake_ms(b, st, mode) * (50.0 if b.key == stalled and first else 3.0 if b.key == slow else 1.0)

    table = fake_table(tmp_path, [s], measure=measure)
    assert table.entries[stalled][1]["eager"] == pytest.approx(fake_ms(blocks[1], table.settings, "eager"))
    assert table.entries[slow][1]["eager"] == pytest.approx(3 * fake_ms(blocks[2], table.settings, "eager"))
    assert table.rechecked == 2 and calls[stalled] == 2 * len(table.settings.modes)
    assert calls[slow] == (1 + RECHECK_ROUNDS) * len(table.settings.modes)
    assert all(n == len(table.settings.modes) for k, n in calls.items() if k not in (stalled, slow))
    assert LatencyTable.load(tmp_path / "t.json").entries[stalled][1] == table.entries[stalled][1]  # saved


def test_unknown_blocks_raise(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec()])
    with pytest.raises(UnpricedLayerError, match="no entries of that kind of block"):
        table.predict(spec("shufflenet", 1.0))  # shuffle blocks were never measured
    classes = [b.cls for b, _ in table.entries.values()]
    known = next(b for b, _ in table.entries.values() if classes.count(b.cls) >= 3)  # a class with a regression
    huge = Block(known.fn, known.names, known.values, (known.in_shape[0], 16, 480, 480))  # same class, far larger
    assert huge.cls == known.cls
    with pytest.raises(UnpricedLayerError, match="outside the measured range"):
        table.price(huge, "eager")
    with pytest.raises(LatencyTableError, match="no optimized"):
        LatencyTable(settings(modes=("eager",))).predict(spec(), "optimized")


def test_sgs_is_never_priced(tmp_path: Path) -> None:
    from space.sgs import with_sgs

    table = fake_table(tmp_path, [spec()])
    sgs = with_sgs(spec(), after_stage=1)
    assert all(b.fn != "similarity_sampling" for b in collect_blocks([sgs]).values())
    with pytest.raises(UnpricedLayerError, match="Similarity Guided Sampling"):
        table.predict(sgs)


def superlinear_ms(b: Block, s: TableSettings, mode: str) -> float:
    """Like :func:`fake_ms`, plus a cost per element that grows with the block (large maps miss the caches)."""
    return fake_ms(b, s, mode) + 0.2 * (b.elements / 1e6) ** 1.5


@pytest.mark.parametrize("measure", [fake_ms, superlinear_ms])
def test_regression_interpolates_inside_the_measured_range(tmp_path: Path, measure: Any) -> None:
    table = fake_table(tmp_path, [spec("mobilenetv2", w) for w in (0.2, 0.35, 0.7, 1.0)], measure=measure)
    unseen = [b for b in collect_blocks([spec("mobilenetv2", 0.45)]).values() if b.key not in table.entries]
    if measure is superlinear_ms:  # only a class with enough entries has the term that grows with the block
        entries = Counter(b.cls for b, _ in table.entries.values())
        unseen = [b for b in unseen if entries[b.cls] >= SIZE_TERM_ENTRIES]
    priced = 0
    for b in unseen:  # the fake times are of the regression's form: the fit recovers them where it may interpolate
        try:
            value = table.price(b, "eager")
        except UnpricedLayerError:
            continue
        assert value == pytest.approx(measure(b, table.settings, "eager"), rel=1e-6)
        priced += 1
    assert priced >= max(1, len(unseen) // 2), "the 0.45x network's blocks lie mostly between the 0.2x and 1.0x ones"


def test_resume_does_not_remeasure(tmp_path: Path) -> None:
    blocks = list(collect_blocks([spec()]).values())
    calls: list[str] = []

    def stops_after_five(b: Block, s: TableSettings, mode: str) -> float:
        if len(calls) == 10:  # five blocks, two paths each
            raise KeyboardInterrupt
        calls.append(b.key)
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        build_table(blocks, settings(), tmp_path / "t.json", measure=stops_after_five, measure_empty=fake_call, progress=False)
    partial = LatencyTable.load(tmp_path / "t.json", complete=False)
    assert len(partial.entries) == 5 and not partial.complete and partial.call_ms == CALL
    with pytest.raises(LatencyTableError, match=r"incomplete \(5 of \d+ blocks"):
        LatencyTable.load(tmp_path / "t.json")
    calls.clear()

    def counting(b: Block, s: TableSettings, mode: str) -> float:
        calls.append(b.key)
        return 1.0

    def no_call(s: TableSettings, mode: str) -> float:
        raise AssertionError("the empty call was measured already")

    table = build_table(blocks, settings(), tmp_path / "t.json", measure=counting, measure_empty=no_call, progress=False)
    assert len(calls) == 2 * (len(blocks) - 5) and not set(calls) & set(partial.entries)
    assert table.complete and len(table.entries) == len(blocks)
    calls.clear()
    build_table(blocks, settings(), tmp_path / "t.json", measure=counting, measure_empty=no_call, progress=False)
    assert calls == []


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    fake_table(tmp_path, [spec()])
    with pytest.raises(LatencyTableError, match=r"other settings: clip 16x48x48 \(asked 16x56x56\), batch_size 1 \(asked 2\)"):
        build_table([], settings(clip=(16, 56, 56), batch_size=2), tmp_path / "t.json", measure=fake_ms, progress=False)


BAD_REPEAT = {"networks": 10, "mape": 1.0, "within_10": "lots", "ratio": 1.0}
"""A repeat check with a field that is no number (described, it would fail to format)."""


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda text: text[: len(text) // 2], "corrupt or truncated JSON"),
        (lambda text: "", "corrupt or truncated JSON"),
        (lambda text: text.replace('"planned": ', '"planned": 1' + "0" * 5000 + ', "x": ', 1), "corrupt or truncated JSON.*4300 digits"),
        (lambda text: "[" * 100_000, "corrupt or truncated JSON.*nested too deeply"),
        (lambda text: text.replace('"block"', '"blok"', 1), "corrupt latency table"),
        (lambda text: text.replace('"inverted_residual"', '"no_such_block"', 1), "corrupt latency table.*no_such_block"),
        (lambda text: text.replace('"cin"', '"cinn"', 1), "corrupt latency table.*cannot be traced"),
        (lambda text: text.replace('"eager": ', '"eager": "fast", "x": ', 1), "corrupt latency table"),
        (lambda text: text.replace('"call_ms"', '"call"', 1), "corrupt latency table"),
        (lambda text: text.replace('"repeat": {}', f'"repeat": {{"eager": {json.dumps(BAD_REPEAT)}}}', 1), "corrupt latency table"),
        (lambda text: text.replace('"repeat": {}', '"repeat": {"eager": 50}', 1), "corrupt latency table"),
        (lambda text: text.replace("e3d-latency-table/2", "other/2"), "schema"),
    ],
)
def test_corrupt_tables_are_one_line_errors(tmp_path: Path, mangle: object, message: str) -> None:
    fake_table(tmp_path, [spec()])
    bad = tmp_path / "bad.json"
    bad.write_text(mangle((tmp_path / "t.json").read_text()))  # type: ignore[operator]
    with pytest.raises(LatencyTableError, match=message) as e:
        LatencyTable.load(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("part", ["entries", "networks", "call_ms"])
@pytest.mark.parametrize("ms", [0.0, -1.0])
def test_times_of_zero_or_less_are_corrupt(tmp_path: Path, part: str, ms: float) -> None:
    fake_table(tmp_path, [spec()], calibration=[spec()], measure_network=lambda s, st, mode: 1.0)
    data = json.loads((tmp_path / "t.json").read_text())
    if part == "call_ms":
        data["call_ms"] = {m: ms for m in data["call_ms"]}
    else:
        data[part][0]["ms"] = {m: ms for m in data[part][0]["ms"]}
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match=r"corrupt latency table .*above 0"):
        LatencyTable.load(tmp_path / "bad.json")


def test_an_operation_level_table_is_refused(tmp_path: Path) -> None:
    old = {"schema": "e3d-latency-table/1", "complete": True, "settings": settings().as_dict(), "entries": [], "networks": []}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(LatencyTableError, match=r"another format \(e3d-latency-table/1; this e3d reads e3d-latency-table/2") as e:
        LatencyTable.load(tmp_path / "old.json")
    assert "\n" not in str(e.value) and "build it again with e3d latency-table" in str(e.value)


def test_check_names_every_mismatch(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec()])
    table.check(clip=CLIP, batch_size=1, precision="fp32", mode="optimized")
    with pytest.raises(LatencyTableError, match=r"clip 16x48x48 \(asked 16x112x112\), batch 1 \(asked 8\), precision fp32 \(asked bf16\)"):
        table.check(clip=(16, 112, 112), batch_size=8, precision="bf16")
    with pytest.raises(LatencyTableError, match="prices an e3d network"):
        predicted_latency(tmp_path / "t.json", None, batch_size=1)
    assert predicted_latency(tmp_path / "t.json", spec(), batch_size=1)["latency_predicted_ms"] > 0


def test_the_prediction_is_for_the_precision_that_is_timed(tmp_path: Path) -> None:
    """A bf16 table prices a bf16 profile, an fp32 table does not (it priced fp32 whatever was timed),
    and ``auto`` (chosen while timing) is refused, naming the table's precision."""
    blocks = list(collect_blocks([spec()]).values())
    bf16 = settings(precision="bf16", modes=("eager",))
    build_table(blocks, bf16, tmp_path / "bf16.json", measure=fake_ms, measure_empty=fake_call, progress=False)
    fake_table(tmp_path, [spec()])
    assert predicted_latency(tmp_path / "bf16.json", spec(), batch_size=1, precision="bf16")["latency_predicted_ms"] > 0
    with pytest.raises(LatencyTableError, match=r"precision fp32 \(asked bf16\)"):
        predicted_latency(tmp_path / "t.json", spec(), batch_size=1, precision="bf16")
    with pytest.raises(LatencyTableError, match=r"--precision auto .* --precision bf16"):
        predicted_latency(tmp_path / "bf16.json", spec(), batch_size=1, precision="auto")


def test_design_sample_keeps_extremes_and_presets() -> None:
    blocks = collect_blocks([spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)])
    keep = collect_blocks([spec("mobilenetv2", 0.7)])
    chosen = {b.key for b in design_sample(blocks, 1, keep=keep)}
    assert set(keep) <= chosen < set(blocks)
    for cls in {b.cls for b in blocks.values()}:
        members = [b for b in blocks.values() if b.cls == cls]
        for feature in (0, 1):
            lo = min(b.features[feature] for b in members)
            hi = max(b.features[feature] for b in members)
            assert any(blocks[k].cls == cls and blocks[k].features[feature] == lo for k in chosen)
            assert any(blocks[k].cls == cls and blocks[k].features[feature] == hi for k in chosen)
    assert len(design_sample(blocks, len(blocks))) == len(blocks)


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
def test_real_measurements_on_both_paths() -> None:
    st = settings(repeats=1, warmup=1)
    nets = [spec("shufflenet", 0.25), spec("shufflenetv2", 0.25), spec("squeezenet", 1.0)]
    blocks = collect_blocks(nets).values()
    picked = {b.fn: min((c for c in blocks if c.fn == b.fn), key=lambda c: c.macs) for b in blocks}  # the cheapest of each
    assert {"stem", "head", "shuffle_v1", "shuffle_v2", "fire"} == set(picked)
    for b in picked.values():
        for mode in st.modes:
            assert measure_block(b, st, mode) > 0
    assert measure_call(st, "optimized") > 0
    assert measure_spec(nets[0], st, "eager") > 0


def test_a_block_the_device_cannot_run_is_one_line(tmp_path: Path) -> None:
    def fails(b: Block, s: TableSettings, mode: str) -> float:
        raise NotImplementedError("\"avg_pool3d_out_frame\" not implemented for 'BFloat16'\nmore")

    blocks = list(collect_blocks([spec()]).values())[:3]
    with pytest.raises(LatencyTableError, match=r"cannot time stem\|.*\(fp32 on cpu, eager\): \"avg_pool3d_out_frame\" not") as e:
        build_table(blocks, settings(), tmp_path / "t.json", measure=fails, measure_empty=fake_call, progress=False)
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
    assert all(r.remeasured_ms is None for r in rows)


def test_remeasure_measures_each_priced_network_again_after_the_first_pass(tmp_path: Path) -> None:
    from profiler.latency_table import compare, noise_floor

    a, b = spec(), spec("mobilenetv2", 0.7)
    table = fake_table(tmp_path, [a, b])
    times = {(a, "eager"): [10.0, 11.0], (a, "optimized"): [1.0, 1.0], (b, "eager"): [20.0, 18.0], (b, "optimized"): [2.0, 2.0]}
    passes: list[tuple[NetSpec, str]] = []

    def measure(s: NetSpec, st: TableSettings, mode: str) -> float:
        first = (s, mode) not in passes
        passes.append((s, mode))
        return times[s, mode][0 if first else 1]

    specs = [("a", "table8", a), ("b", "table8", b), ("shuffle", "random", spec("shufflenet", 1.0))]
    rows = compare(table, specs, measure=measure, remeasure=True, progress=False)
    assert len(set(passes[:4])) == 4 and passes[4:] == passes[:4]  # every network once, then again in the same order
    pairs = [(r.measured_ms, r.remeasured_ms) for r in rows]
    assert pairs == [(10.0, 11.0), (1.0, 1.0), (20.0, 18.0), (2.0, 2.0), (None, None), (None, None)]
    floor = noise_floor(rows)
    assert (floor.networks, floor.unpriced) == (4, 0)
    assert floor.mape == pytest.approx(100 * (0.1 + 0 + 0.1 + 0) / 4) and floor.within_10 == pytest.approx(100.0)


def test_the_table_records_its_allocator_and_a_resume_under_another_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from profiler import latency_table as lt

    monkeypatch.setattr(lt, "allocator", lambda: "keep")
    blocks = list(collect_blocks([spec()]).values())
    with pytest.raises(KeyboardInterrupt):
        build_table(blocks, settings(), tmp_path / "t.json", measure=interrupted(), measure_empty=fake_call, progress=False)
    partial = LatencyTable.load(tmp_path / "t.json", complete=False)
    assert partial.allocator == "keep"
    monkeypatch.setattr(lt, "allocator", lambda: "system")
    with pytest.raises(LatencyTableError, match="malloc as keep, this process runs it as system: resume with E3D_MALLOC=keep"):
        build_table(blocks, settings(), tmp_path / "t.json", measure=fake_ms, measure_empty=fake_call, progress=False)
    data = json.loads((tmp_path / "t.json").read_text())
    del data["allocator"]  # a table from before the field: measured with the system's malloc
    assert LatencyTable.from_dict(data).allocator == "system"


def interrupted() -> Callable[[Block, TableSettings, str], float]:
    """A measure that stops the build (Ctrl-C) at its fifth measurement."""
    calls: list[str] = []

    def measure(b: Block, s: TableSettings, mode: str) -> float:
        calls.append(b.key)
        if len(calls) > 4:
            raise KeyboardInterrupt
        return 1.0

    return measure


def here_settings() -> TableSettings:
    """:func:`settings` with this machine's device model and torch, as :func:`recalibrate` requires."""
    import torch

    from profiler.latency import device_name

    return settings(device_name=device_name(torch.device("cpu")), torch_version=torch.__version__)


def test_a_table_of_a_cpu_with_this_model_name_but_not_its_isa_is_refused() -> None:
    from dataclasses import replace
    from types import SimpleNamespace

    from profiler.allocator import allocator
    from profiler.cpu import cpu_name
    from profiler.latency_table import check_here

    check_here(SimpleNamespace(settings=here_settings(), allocator=allocator()))  # type: ignore[arg-type]
    bare = replace(here_settings(), device_name=cpu_name())  # the model name alone, as tables named CPUs before 2026-12-07
    with pytest.raises(LatencyTableError, match=f"another device {cpu_name()} "):
        check_here(SimpleNamespace(settings=bare, allocator=allocator()))  # type: ignore[arg-type]


def test_recalibrate_makes_predictions_follow_the_device_now(tmp_path: Path) -> None:
    nets = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)]

    def whole(s: NetSpec, st: TableSettings, mode: str, factor: float = 2.0) -> float:
        return factor * (CALL[mode] + sum(own_time(b, mode) for b in spec_blocks(s)))

    blocks = list(collect_blocks([*nets, spec("mobilenetv2", 0.35)]).values())
    out = tmp_path / "t.json"
    measures: dict[str, Any] = {"measure": fake_ms, "measure_network": whole, "measure_empty": fake_call}
    table = build_table(blocks, here_settings(), out, calibration=nets, progress=False, **measures)
    held_out = spec("mobilenetv2", 0.35)
    before, fingerprint = table.predict(held_out, "eager"), table.fingerprint()
    drift = recalibrate(table, measure_network=lambda s, st, m: whole(s, st, m, factor=1.8), progress=False)
    assert drift == {m: pytest.approx(0.9) for m in ("eager", "optimized")}
    assert table.predict(held_out, "eager") == pytest.approx(0.9 * before, rel=1e-9)  # the fitted overhead followed
    assert table.recalibrated and table.fingerprint() != fingerprint  # a study that screened with it before refuses it
    table.save(out)
    again = LatencyTable.load(out)
    assert again.recalibrated == table.recalibrated and again.networks == table.networks


def test_recalibrate_refuses_a_table_of_another_machine_or_without_networks(tmp_path: Path) -> None:
    other = fake_table(tmp_path, [spec()], calibration=[spec()], measure_network=lambda s, st, m: 1.0)
    with pytest.raises(LatencyTableError, match=r"measured with another device test cpu \(here .+\), torch x \(here "):
        recalibrate(other, measure_network=lambda s, st, m: 1.0, progress=False)
    bare = build_table([], here_settings(), tmp_path / "bare.json", measure_empty=fake_call, progress=False)
    with pytest.raises(LatencyTableError, match="no calibration networks"):
        recalibrate(bare, measure_network=lambda s, st, m: 1.0, progress=False)


def test_measuring_order_is_a_seeded_permutation() -> None:
    from profiler.latency_table import measuring_order

    order = measuring_order(50)
    assert sorted(order) == list(range(50)) and order != list(range(50))
    assert measuring_order(50) == order and measuring_order(50, seed=1) != order


def test_a_build_times_blocks_and_calibration_networks_in_one_shuffled_order(tmp_path: Path) -> None:
    # a machine that drifts while it measures must not make one family's blocks, or the calibration
    # networks timed after every block, all slow or all fast together
    nets = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7, 1.0)] + [spec("shufflenetv2", w) for w in (0.5, 1.0)]
    blocks = list(collect_blocks(nets).values())
    timed: list[str] = []

    def block_ms(b: Block, s: TableSettings, mode: str) -> float:
        timed.append(b.key)
        return fake_ms(b, s, mode)

    def net_ms(n: NetSpec, s: TableSettings, mode: str) -> float:
        timed.append(n.to_json())
        return 1.0

    fake_table(tmp_path, nets, calibration=nets, measure=block_ms, measure_network=net_ms)
    built = timed[: 2 * (len(blocks) + len(nets))]  # then some networks are timed again (repeatability)
    first = [t for i, t in enumerate(built) if i % 2 == 0]  # each thing is timed on two paths in a row
    given = [b.key for b in blocks] + [n.to_json() for n in nets]
    assert sorted(first) == sorted(given) and first != given
    last_block = max(i for i, t in enumerate(first) if t in {b.key for b in blocks})
    assert any(first.index(n.to_json()) < last_block for n in nets)  # calibration networks among the blocks
    families = [t.split("|")[0] for t in first if "|" in t and t.split("|")[0] in {"inverted_residual", "shuffle_v2"}]
    switches = sum(a != b for a, b in itertools.pairwise(families))
    assert switches > 2  # the two families' blocks interleave


def test_compare_measures_in_a_shuffled_order_and_returns_rows_in_the_given_one(tmp_path: Path) -> None:
    from profiler.latency_table import compare

    widths = (0.2, 0.3, 0.45, 0.6, 0.7, 0.8, 1.0)
    specs = [(f"w{w}", "random", spec("mobilenetv2", w)) for w in widths]
    table = fake_table(tmp_path, [s for _, _, s in specs])
    seen: list[tuple[float, str]] = []

    def ms(width: float, mode: str) -> float:
        return width + (0.5 if mode == "optimized" else 0.0)

    def measure(s: NetSpec, st: TableSettings, mode: str) -> float:
        seen.append((s.width_mult, mode))
        return ms(s.width_mult, mode)

    rows = compare(table, specs, measure=measure, progress=False)
    given = [(w, m) for w in widths for m in ("eager", "optimized")]
    assert [(r.name, r.mode, r.measured_ms) for r in rows] == [(f"w{w}", m, ms(w, m)) for w, m in given]
    assert sorted(seen) == sorted(given) and seen != given


def test_a_build_ends_by_timing_calibration_networks_again_and_stores_how_far_they_moved(tmp_path: Path) -> None:
    widths = (0.2, 0.3, 0.35, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4)
    nets = [spec("mobilenetv2", w) for w in widths]
    assert len(nets) > REPEAT_NETWORKS
    moved = dict(zip(widths, (1.5, 0.95, 1.2, 1.0, 1.1) * 3, strict=False))  # second timing / first, per width
    seen: Counter[str] = Counter()

    def whole(s: NetSpec, st: TableSettings, mode: str) -> float:
        seen[s.to_json()] += 1
        again = seen[s.to_json()] > len(st.modes)
        return (10.0 if mode == "eager" else 4.0) * (moved[s.width_mult] if again else 1.0)

    table = fake_table(tmp_path, nets, calibration=nets, measure_network=whole)
    timed_again = [s.width_mult for s, _ in table.networks[:REPEAT_NETWORKS]]
    assert sorted(seen.values()) == [2] * (len(nets) - REPEAT_NETWORKS) + [4] * REPEAT_NETWORKS
    assert all(seen[s.to_json()] == 4 for s, _ in table.networks[:REPEAT_NETWORKS])
    errors = [100 * abs(moved[w] - 1) for w in timed_again]
    for mode in ("eager", "optimized"):
        r = table.repeat[mode]
        assert r.networks == REPEAT_NETWORKS and r.mape == pytest.approx(sum(errors) / len(errors))
        assert r.within_10 == pytest.approx(100 * sum(moved[w] in (0.95, 1.0, 1.1) for w in timed_again) / REPEAT_NETWORKS)
        assert r.ratio == pytest.approx(math.prod(moved[w] for w in timed_again) ** (1 / REPEAT_NETWORKS))
    assert [ms for _, ms in table.networks] == [{"eager": 10.0, "optimized": 4.0}] * len(nets)  # the first timings are kept
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.repeat == table.repeat and loaded.fingerprint() == table.fingerprint()
    without = LatencyTable.from_dict({**table.to_dict(), "repeat": {}})
    assert without.fingerprint() == table.fingerprint()  # a study screened with the table still accepts it


def test_a_build_stopped_while_timing_again_resumes_with_that_alone(tmp_path: Path) -> None:
    nets = [spec("mobilenetv2", w) for w in (0.2, 0.45, 0.7)]
    blocks = list(collect_blocks(nets).values())
    timed: list[str] = []

    def stops_when_timing_again(s: NetSpec, st: TableSettings, mode: str) -> float:
        if timed.count(s.to_json()) == len(st.modes):
            raise KeyboardInterrupt
        timed.append(s.to_json())
        return 1.0

    kw: dict[str, Any] = {"calibration": nets, "measure": fake_ms, "measure_empty": fake_call, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        build_table(blocks, settings(), tmp_path / "t.json", measure_network=stops_when_timing_again, **kw)
    partial = LatencyTable.load(tmp_path / "t.json", complete=False)
    assert not partial.complete and not partial.repeat and len(partial.entries) == len(blocks) and len(partial.networks) == 3

    def no_block(b: Block, s: TableSettings, mode: str) -> float:
        raise AssertionError("every block was timed already")

    again: list[str] = []

    def counting(s: NetSpec, st: TableSettings, mode: str) -> float:
        again.append(s.to_json())
        return 1.0

    table = build_table(blocks, settings(), tmp_path / "t.json", measure_network=counting, **{**kw, "measure": no_block})
    assert table.complete and sorted(again) == sorted(n.to_json() for n in nets for _ in range(2))
    assert table.repeat["eager"] == Repeat(3, 0.0, 100.0, 1.0)


def test_a_build_stopped_while_it_times_a_stall_again_times_it_on_resume(tmp_path: Path) -> None:
    s = spec()
    blocks = [b for b in collect_blocks([s]).values() if b.fn == "inverted_residual"]
    stalled = blocks[1].key
    calls: dict[str, int] = {}

    def stops_at_the_recheck(b: Block, st: TableSettings, mode: str) -> float:
        calls[b.key] = calls.get(b.key, 0) + 1
        if calls[b.key] > len(st.modes):
            raise KeyboardInterrupt  # Ctrl-C as the stalled block is timed again
        return fake_ms(b, st, mode) * (50.0 if b.key == stalled else 1.0)

    with pytest.raises(KeyboardInterrupt):
        fake_table(tmp_path, [s], measure=stops_at_the_recheck)
    table = fake_table(tmp_path, [s])  # the resume: every block is timed already
    assert table.complete and table.rechecked == 1  # was 0: the stall stayed in the finished table
    assert table.entries[stalled][1]["eager"] == pytest.approx(fake_ms(blocks[1], table.settings, "eager"))


def test_a_table_without_calibration_networks_or_from_before_has_no_repeat(tmp_path: Path) -> None:
    table = fake_table(tmp_path, [spec()])
    assert table.repeat == {} and LatencyTable.load(tmp_path / "t.json").repeat == {}
    old = json.loads((tmp_path / "t.json").read_text())
    del old["repeat"]
    assert LatencyTable.from_dict(old).repeat == {}
