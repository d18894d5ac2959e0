"""`prmf score` and `prmf processbench` on a really trained model in a real store."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.store import Store
from tasks.verifiers import load_verifier

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def db(trained_models, tmp_path):
    path = tmp_path / "store.duckdb"
    shutil.copy(trained_models["db"], path)
    return path


def test_score_file_scores_each_step_and_skips_bad_lines(db, trained_models, tmp_path):
    source = tmp_path / "solutions.jsonl"
    source.write_text("\n".join([
        json.dumps({"question": "What is 2 + 3?", "solution": "2 + 3 = 5\nThe answer is 5."}),
        json.dumps({"question": "What is 2 + 3?", "steps": ["2 + 3 = 6", "6 + 0 = 6", "The answer is 6."]}),
        json.dumps({"question": "What is 1 + 1?"}),
    ]) + "\n")
    result = runner.invoke(app, ["score", "--file", str(source), "--db", str(db)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(line["step_scores"]) for line in lines] == [2, 3]
    assert {line["model_id"] for line in lines} == {trained_models["prm"].model_id}
    assert f"{source}:3" in result.stderr and "solution" in result.stderr
    # The numbers are the model's own: the same as calling the scoring function.
    expected = load_verifier(trained_models["prm"].path).score_many(
        [("What is 2 + 3?", ["2 + 3 = 5", "The answer is 5."]), ("What is 2 + 3?", ["2 + 3 = 6", "6 + 0 = 6", "The answer is 6."])])
    assert [line["step_scores"] for line in lines] == [[round(x, 6) for x in s.step_scores] for s in expected]
    assert [line["truncated"] for line in lines] == [False, False]


def test_score_needs_input_and_a_known_model(db):
    assert runner.invoke(app, ["score", "--db", str(db)]).exit_code == 2
    result = runner.invoke(app, ["score", "--model", "nope", "--question", "q", "--solution", "a", "--db", str(db)])
    assert result.exit_code == 2 and "no model 'nope'" in result.stderr


def test_processbench_cli_stores_a_row(db, trained_models):
    result = runner.invoke(app, ["processbench", "--split", "math", "--limit", "4", "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["threshold_source"] == "gsm8k" and data["samples"] == 4
    with Store(db, read_only=True) as store:
        assert store.query("SELECT model_id, split, f1 FROM processbench_results").rows == [
            (trained_models["prm"].model_id, "math", data["f1"])]
    bad = runner.invoke(app, ["processbench", "--split", "aime", "--db", str(db)])
    assert bad.exit_code == 2 and "split: Input should be 'gsm8k' or 'math'" in bad.stderr


def test_processbench_rows_carry_the_flow_run_id(db):
    from flows.processbench import processbench
    from tasks.config import ProcessBenchConfig

    config = ProcessBenchConfig(db=db, split="gsm8k", limit=2, threshold=0.5)
    state = processbench(config=config, return_state=True)
    result = state.result()
    with Store(db, read_only=True) as store:
        [(run_id, threshold)] = store.query("SELECT run_id, threshold FROM processbench_results").rows
        [(flow_name, status, stored)] = store.query("SELECT flow_name, status, config FROM runs WHERE run_id = ?",
                                                    [run_id]).rows
    assert run_id == str(state.state_details.flow_run_id) and threshold == 0.5 and result["samples"] == 2
    # Lineage: the run's own row, with the configuration it ran with.
    assert (flow_name, status) == ("processbench", "completed")
    assert ProcessBenchConfig.model_validate(json.loads(stored)) == config
