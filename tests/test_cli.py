"""The prmf CLI on a real DuckDB file (commands that need no engine)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_ingest_reports_counts_and_quarantine(tmp_path):
    source = tmp_path / "mixed.jsonl"
    source.write_text('{"q": "1+1?", "a": "2"}\n{broken\n{"q": "2+2?", "a": "4"}\n')
    db = tmp_path / "cli.duckdb"
    result = runner.invoke(app, ["ingest", "--dataset", "jsonl", "--path", str(source), "--question-field", "q",
                                 "--answer-field", "a", "--answer-kind", "numeric", "--db", str(db)])
    assert result.exit_code == 0, result.output
    counts_row = next(line for line in result.output.splitlines() if line.startswith("│ mixed"))
    assert [c.strip() for c in counts_row.strip("│").split("│")] == ["mixed", "train", "2", "2", "1"]
    assert "quarantine" in result.output and "invalid JSON" in result.output
    from tasks.store import Store

    with Store(db, read_only=True) as store:
        assert store.query("SELECT source, line FROM quarantine").rows == [(str(source), 2)]


def test_query_json_and_saved_queries(tmp_path):
    db = tmp_path / "cli.duckdb"
    assert runner.invoke(app, ["ingest", "--dataset", "gsm8k", "--limit", "3", "--db", str(db)]).exit_code == 0
    result = runner.invoke(app, ["query", "SELECT dataset, split, gold_answer FROM problems ORDER BY source_row",
                                 "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"dataset": "gsm8k", "split": "test", "gold_answer": "18"},
        {"dataset": "gsm8k", "split": "test", "gold_answer": "3"},
        {"dataset": "gsm8k", "split": "test", "gold_answer": "70000"},
    ]
    listing = runner.invoke(app, ["query", "--list"])
    assert "label_stats" in listing.output and "gold_agreement" in listing.output
    saved = runner.invoke(app, ["query", "dataset_accuracy", "--json", "--db", str(db)])
    assert saved.exit_code == 0 and json.loads(saved.output) == []


def test_bad_input_gives_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PRMF_DB", str(tmp_path / "env.duckdb"))
    missing = runner.invoke(app, ["query", "SELECT 1"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bad_sql = tmp_path / "env.duckdb"
    runner.invoke(app, ["ingest", "--dataset", "arith", "--limit", "2"])
    assert bad_sql.exists()
    result = runner.invoke(app, ["query", "SELEC nonsense"])
    assert result.exit_code == 2 and "error" in result.output
    result = runner.invoke(app, ["label", "--dataset", "nope"])
    assert result.exit_code == 2 and "unknown dataset" in result.output
    result = runner.invoke(app, ["label", "--rollouts", "0"])
    assert result.exit_code == 2 and "rollouts" in result.output
    result = runner.invoke(app, ["label", "--backend", "openai"])
    assert result.exit_code == 2 and "base URL" in result.output
    result = runner.invoke(app, ["ingest", "--dataset", "jsonl", "--path", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "nope.jsonl" in result.output
    # Label checks models and sources before starting any flow run: one line, no traceback.
    result = runner.invoke(app, ["label", "--generator", str(tmp_path / "no-model")])
    assert result.exit_code == 2 and "no-model" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["label", "--dataset", "jsonl", "--path", str(tmp_path / "gone.jsonl")])
    assert result.exit_code == 2 and "gone.jsonl: file not found" in result.output


def test_config_file_and_flag_overrides_compose(tmp_path):
    from flows.cli import _config
    from tasks.config import FactoryConfig, LabelConfig

    def _build_config(model, base, overrides):
        path = tmp_path / "config.json"
        path.write_text(json.dumps(base))
        return _config(model, path, overrides)

    base = {"dataset": {"name": "gsm8k", "limit": 7}, "rollouts": 16}
    config = _build_config(LabelConfig, base, {"dataset.name": None, "rollouts": 4, "generation.temperature": 0.2})
    assert config.dataset.name == "gsm8k" and config.dataset.limit == 7  # unset flags keep the file's values
    assert config.rollouts == 4  # set flags win
    assert config.generation.temperature == 0.2 and config.generation.max_tokens == 192  # siblings keep defaults
    assert config.completer is None and config.completer_settings == config.generator
    # A partial sampling block in the file keeps the field's own defaults for the keys it leaves out.
    partial = _build_config(LabelConfig, {"generation": {"temperature": 0.9}, "rollout": {"top_p": 0.9}}, {})
    assert (partial.generation.temperature, partial.generation.max_tokens) == (0.9, 192)
    assert partial.rollout.top_p == 0.9 and partial.rollout.repetition_stop == LabelConfig().rollout.repetition_stop
    assert _build_config(LabelConfig, {"rollout": {"repetition_stop": None}}, {}).rollout.repetition_stop is None

    # The factory's nested config composes the same way; one --db reaches every stage.
    factory = _build_config(FactoryConfig, {"label": {"rollouts": 2, "retrain_threshold_steps": 9}},
                            {"db": "x.duckdb", "label.db": "x.duckdb", "train.db": "x.duckdb", "eval.db": "x.duckdb",
                             "train.epochs": 1, "label.retrain_threshold_steps": None})
    assert factory.label.rollouts == 2 and factory.train.epochs == 1 and factory.label.retrain_threshold_steps == 9
    assert {str(c.db) for c in (factory, factory.label, factory.train, factory.eval)} == {"x.duckdb"}


def test_damaged_or_locked_store_gives_one_line_errors_on_every_command(tmp_path, monkeypatch):
    import hashlib
    import subprocess
    import sys

    monkeypatch.setenv("PRMF_DB_LOCK_WAIT_S", "1")
    commands = [["query", "SELECT 1"], ["ingest", "--dataset", "arith", "--limit", "2"],
                ["label", "--limit", "1"], ["demo"], ["doctor"]]

    damaged = tmp_path / "damaged.duckdb"
    damaged.write_bytes(b"this is not a database\n" * 200)
    before = hashlib.sha256(damaged.read_bytes()).hexdigest()
    for command in commands:
        result = runner.invoke(app, command + ["--db", str(damaged)])
        assert result.exit_code in (1, 2), (command, result.output)
        assert str(damaged) in result.output and "Traceback" not in result.output, (command, result.output)
        if command[0] != "doctor":  # doctor prints its table; the others print exactly one error line
            assert result.output.strip().count("\n") == 0 and result.output.startswith("error:"), result.output
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == before  # nothing rewrote it

    locked = tmp_path / "locked.duckdb"
    assert runner.invoke(app, ["ingest", "--dataset", "arith", "--limit", "3", "--db", str(locked)]).exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(locked)!r}); "
                               "print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in commands:
            result = runner.invoke(app, command + ["--db", str(locked)])
            assert result.exit_code in (1, 2), (command, result.output)
            assert f"PID {holder.pid}" in " ".join(result.output.split()), (command, result.output)
            assert "Traceback" not in result.output
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    result = runner.invoke(app, ["query", "SELECT count(*) AS n FROM problems", "--json", "--db", str(locked)])
    assert json.loads(result.output) == [{"n": 3}]  # the holder's store is intact


COMMANDS = {  # command -> (its configuration model, a config file, flags, the dotted fields the flags set)
    "label": ("LabelConfig", {"dataset": {"name": "gsm8k", "limit": 5}, "rollouts": 16},
              ["--limit", "7", "--select", "next", "--step-format", "paragraph"],
              {"dataset.limit": 7, "dataset.select": "next", "step_format": "paragraph"}),
    "train": ("TrainConfig", {"kind": "orm", "epochs": 3}, ["--epochs", "1", "--lr", "0.001"],
              {"epochs": 1, "lr": 0.001}),
    "eval": ("EvalConfig", {"n_max": 4, "validation": [{"name": "arith", "split": "validation", "limit": 9}]},
             ["--n-max", "2", "--validation-limit", "3", "--step-format", "marker"],
             {"n_max": 2, "validation.0.limit": 3, "step_format": "marker"}),
    "processbench": ("ProcessBenchConfig", {"split": "math", "limit": 10}, ["--limit", "4"], {"limit": 4}),
    "score": ("ScoreConfig", {"batch_size": 2}, ["--step-format", "paragraph"], {"step_format": "paragraph"}),
    "ingest": ("IngestConfig", {"dataset": {"name": "math500", "limit": 3}}, ["--limit", "2"], {"dataset.limit": 2}),
    "export": ("ExportConfig", {"format": "math-shepherd", "label": "se", "datasets": ["arith"]},
               ["--format", "pairs", "--split", "validation", "--min-rollouts", "4", "--measured-only"],
               {"format": "pairs", "splits": ["validation"], "min_rollouts": 4, "measured_only": True,
                "label": "se", "datasets": ["arith"]}),
    "import": ("ImportConfig", {"path": "labels.jsonl", "format": "trl", "dataset": "mine"}, ["--split", "test", "--limit", "3"],
               {"split": "test", "limit": 3}),
    "factory": ("FactoryConfig", {"train": {"epochs": 5}, "label": {"dataset": {"name": "gsm8k", "split": "train"}}},
                ["--limit", "3", "--epochs", "1", "--confidence", "0.9", "--eval-limit", "6"],
                {"label.dataset.limit": 3, "train.epochs": 1, "promotion_confidence": 0.9,
                 "eval.datasets.0.limit": 6}),
    "retrain": ("FactoryConfig", {"eval": {"n_max": 4}}, ["--target", "se"], {"train.target": "se"}),
    "study": ("StudyConfig", {"sizes": [5, 10], "label": {"rollouts": 4}, "train": {"epochs": 3}},
              ["--size", "3", "--size", "6", "--verifier", "orm", "--verifier", "oracle", "--epochs", "1",
               "--validation-limit", "7", "--selection-n", "4"],
              {"sizes": [3, 6], "verifiers": ["orm", "oracle"], "scaling_verifiers": ["orm"], "train.epochs": 1,
               "label.rollouts": 4, "label.strategy": "naive+root", "eval.validation.0.limit": 7, "selection_n": 4}),
}


def _at(data, dotted):
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def test_every_command_builds_its_configuration_one_way(tmp_path):
    """--config FILE, then flags on top, into the one configuration model: what --show-config prints
    is exactly what the model makes of the file plus the flags, i.e. what a deployment run receives."""
    import tasks.config as models

    for command, (model_name, file_data, flags, expected) in COMMANDS.items():
        model = getattr(models, model_name)
        path = tmp_path / f"{command}.json"
        path.write_text(json.dumps(file_data))
        db = tmp_path / "x.duckdb"
        result = runner.invoke(app, [command, "--config", str(path), *flags, "--db", str(db), "--show-config"])
        assert result.exit_code == 0, (command, result.output)
        shown = json.loads(result.output)
        config = model.model_validate(shown)  # a deployment given this JSON gets this configuration
        assert config.db == db, command
        for dotted, value in expected.items():
            assert _at(shown, dotted) == value, (command, dotted)
        # Fields the flags did not touch keep the file's values.
        untouched = {k: v for k, v in file_data.items() if not any(d.split(".")[0] == k for d in expected)}
        for key, value in untouched.items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    assert shown[key][sub] == sub_value, (command, key, sub)
            else:
                assert shown[key] == value, (command, key)
    # A factory's label stage is a data cursor unless its config asks for a fixed slice.
    factory = json.loads(runner.invoke(app, ["factory", "--config", str(tmp_path / "factory.json"), "--show-config"]).output)
    assert factory["label"]["dataset"]["select"] == "next" and factory["label"]["dataset"]["split"] == "train"


def test_bad_config_files_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = runner.invoke(app, ["train", "--config", str(broken)])
    assert result.exit_code == 2 and f"cannot read config {broken}" in result.output
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"epochz": 2}))
    result = runner.invoke(app, ["train", "--config", str(typo)])
    assert result.exit_code == 2 and "epochz: Extra inputs are not permitted" in result.output
    test_split = tmp_path / "validation.json"
    test_split.write_text(json.dumps({"validation": [{"name": "gsm8k", "split": "test"}]}))
    result = runner.invoke(app, ["eval", "--config", str(test_split)])
    assert result.exit_code == 2 and "is a test split" in result.output
