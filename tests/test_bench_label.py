"""`prmf bench label`: its statistics on hand-built labels, and a small run on the real engine."""

from __future__ import annotations

import pytest

from tasks.bench_label import _bootstrap_agreement, _per_problem


def labels(outcomes: dict[str, list[tuple[bool, bool | None]]]) -> dict:
    """problem -> [(he, gold), ...] as the bench stores them: (solution, step) -> (problem, he, gold)."""
    return {(f"{p}-s", i): (p, he, gold) for p, steps in outcomes.items() for i, (he, gold) in enumerate(steps)}


def test_agreement_counts_steps_with_gold_per_problem():
    a = labels({"p1": [(True, True), (False, False), (True, None)], "p2": [(True, False), (False, False)]})
    assert _per_problem(a) == {"p1": (2, 2), "p2": (1, 2)}  # the step without gold is not counted


def test_bootstrap_interval_and_paired_difference():
    a = labels({"p1": [(True, True), (False, False)], "p2": [(True, False), (True, False)]})  # 2 of 4
    b = labels({"p1": [(True, True), (True, False)], "p2": [(True, False), (False, False)]})  # 2 of 4
    perfect = labels({"p1": [(True, True)], "p2": [(False, False)]})
    alone = _bootstrap_agreement({"a": a, "perfect": perfect})
    point, (low, high) = alone["a"]
    assert point == 0.5 and 0.0 <= low <= 0.5 <= high <= 1.0 and low < high
    assert alone["perfect"] == (1.0, (1.0, 1.0))  # every resample agrees fully
    paired = _bootstrap_agreement({"a": a, "b": b, "naive": a}, baseline="naive")
    assert paired["naive"] == (0.0, (0.0, 0.0))
    # a agrees 2/2 on p1 and 0/2 on p2, b 1/2 on each: equal in total (difference 0), but a resample
    # drawing p1 more often favours a and one drawing p2 more often favours b.
    point, (low, high) = paired["b"]
    assert point == 0.0 and low < 0 < high


@pytest.mark.engine
def test_bench_runs_the_strategies_on_the_real_engine_and_writes_its_report(tmp_path, engine):
    """A small `prmf bench label` run end to end (the session's engine): naive first, every figure
    present, ratios to naive, reuse labelling more prefixes than binary search from the same
    solutions, the JSON written and the table printable."""
    import json

    from tasks import bench_label
    from tasks.config import DatasetSettings, LabelConfig, SamplingSettings

    config = LabelConfig(db=tmp_path / "unused.duckdb", dataset=DatasetSettings(name="arith", limit=3), solutions=2,
                         rollouts=2, generation=SamplingSettings(temperature=0.9, max_tokens=96),
                         rollout=SamplingSettings(temperature=0.9, max_tokens=64))
    report = bench_label.run(config, ["binary_search", "binary_search+reuse"], tmp_path / "work", progress=lambda _: None)
    names = [r["strategy"] for r in report["strategies"]]
    assert names == ["naive", "binary_search", "binary_search+reuse"]
    naive, search, reuse = report["strategies"]
    assert naive["ratios"]["tokens"] == 1.0 and naive["labelled_steps"] > 0 and naive["gold_agreement"] is not None
    assert report["raw_engine"]["prompts"] > 0 and report["factory_vs_raw_engine"] > 0
    assert search["tokens"] <= naive["tokens"] and reuse["labelled_steps"] >= search["labelled_steps"]
    assert reuse["ratios"]["labelled_steps"] == pytest.approx(reuse["labelled_steps"] / naive["labelled_steps"])
    bench_label.write_json(report, tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text())["config"]["rollouts"] == 2
    columns, rows = bench_label.table_rows(report)
    assert len(rows) == 3 and all(len(row) == len(columns) for row in rows)
