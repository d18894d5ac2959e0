"""How tests/data/store-v6.duckdb.gz was made: with the code of commit 1e6ba68 (schema version 6,
the last version before labelling strategies), run from a checkout of that commit:

    git worktree add /tmp/old 1e6ba68 && cd /tmp/old
    PYTHONPATH=. python /path/to/make_store_v6.py store-v6.duckdb pool.jsonl && gzip -9 store-v6.duckdb

tests/test_store.py opens a copy with the current code: every row must survive the migrations.
"""

import json
import sys
from pathlib import Path

from tasks.config import DatasetSettings, EvalConfig, LabelConfig
from tasks.growth import claim_retrain
from tasks.ingest import ingest_problems
from tasks.pools import import_external_pool
from tasks.store import Store
from tests.helpers import seed_labelled_arith

db = Path(sys.argv[1]); pool_file = Path(sys.argv[2])
with Store(db) as store:
    seed_labelled_arith(store, 3)
    ingest_problems(store, DatasetSettings(name="gsm8k", split="test", limit=2))
    store.start_run({"run_id": "old-label-run", "flow_name": "label", "flow_run_name": "label-arith-m2-n4",
                     "dataset": "arith", "config": json.dumps(LabelConfig(db=db).public_dump()), "code_version": "0.1.0+1e6ba68",
                     "host": "old-host", "pid": 1})
    store.finish_run("old-label-run", "completed")
    claim_retrain(store, 1, "old-label-run", "arith")
    pool_file.write_text("\n".join(json.dumps(r) for r in [
        {"question": "What is 2 + 3?", "answer": "5", "responses": ["2 + 3 = 5\nThe answer is 5.", "The answer is 6."],
         "scores": [[0.9, 0.8], [0.2]], "correct": [True, False]}]) + "\n")
    pool = import_external_pool(store, pool_file, EvalConfig(db=db, n_max=2), "old-eval-run")
    # A PRM registered by the old trainer, and its cached scores: one complete, one cut short by the
    # old right-truncation (1 score for a 2-step candidate): the old `last` read the wrong step there.
    store.insert_rows("prm_models", [{"model_id": "prm-he-old", "kind": "prm", "base_model": "smollm2", "target": "he",
                                      "path": "/nonexistent/prm-he-old", "data_snapshot": json.dumps({"labelled_steps": 24}),
                                      "hyperparameters": "{}", "val_metrics": json.dumps({"val_loss": 0.5}), "run_id": "old-train-run",
                                      "promoted": True}])
    pid = store.scalar("SELECT problem_id FROM eval_candidates LIMIT 1")
    store.insert_rows("eval_scores", [
        {"model_id": "prm-he-old", "pool_id": pool.pool_id, "problem_id": pid, "candidate_index": 0, "step_scores": [0.7]},
        {"model_id": "prm-he-old", "pool_id": pool.pool_id, "problem_id": pid, "candidate_index": 1, "step_scores": [0.3]},
    ])
    store.query("CHECKPOINT")
    print({t: store.scalar(f"SELECT count(*) FROM {t}") for t in ("problems", "solutions", "steps", "work_units", "rollouts",
           "runs", "retrain_triggers", "eval_pools", "eval_candidates", "eval_scores", "prm_models", "quarantine")})
    print(store.scalar("SELECT max(version) FROM schema_migrations"))
