"""The oracle PRM (``prmf train --target gold``): targets are the stored gold step labels of every
solution that has them, rollouts or not (a hand-built store, a real DuckDB file), and one real
training run of SmolLM2 cut to 4 layers registers a ``prm-gold-*`` model that cost no rollouts."""

from __future__ import annotations

import json

import pytest

from tasks.config import TrainConfig
from tasks.store import Store
from tasks.training import TrainingError, load_examples, train_reward_model
from tests.helpers import seed_labelled_arith, seed_store
from tests.test_training_precision import base  # noqa: F401  (base: SmolLM2 cut to 4 layers)


def test_oracle_targets_are_the_gold_labels_of_every_solution_that_has_them(db_path):
    with Store(db_path) as store:
        with pytest.raises(TrainingError, match="no solutions with gold step labels"):
            train_reward_model(store, TrainConfig(db=db_path, target="gold"))
        # s1: no rollouts at all (never labelled), gold right, wrong, wrong.
        seed_store(store, {}, solution_correct=False, gold=[True, False, False])
        # s9: the same problem, one step without a gold label: not an oracle example.
        store.query("INSERT INTO solutions BY NAME SELECT * REPLACE ('s9' AS solution_id, 2 AS num_steps) "
                    "FROM solutions WHERE solution_id = 's1'")
        store.insert_rows("steps", [{"solution_id": "s9", "step_index": 1, "text": "a", "prefix_hash": "h1",
                                     "gold": True},
                                    {"solution_id": "s9", "step_index": 2, "text": "z", "prefix_hash": "z2",
                                     "gold": None}])
        assert store.scalar("SELECT count(*) FROM labelled_steps") == 0  # HE/SE have nothing to train on
        dropped, _ = load_examples(store, TrainConfig(db=db_path, target="gold"))
        kept, _ = load_examples(store, TrainConfig(db=db_path, target="gold", after_first_error="keep"))
    assert [(e.solution_id, e.steps, e.targets) for e in dropped] == [("s1", ("a", "b", "c"), (1.0, 0.0, None))]
    assert [e.targets for e in kept] == [(1.0, 0.0, 0.0)]


def test_oracle_training_registers_a_gold_model_that_cost_no_rollouts(db_path, tmp_path, base):  # noqa: F811
    with Store(db_path) as store:
        seed_labelled_arith(store, 3)  # gold = the solution's correctness on every step; rollouts stored too
        config = TrainConfig(db=db_path, models_dir=tmp_path / "models", base_model=str(base), target="gold",
                             epochs=1, batch_size=4, lr=5e-5, val_fraction=0.34)
        result = train_reward_model(store, config, run_id="test-run")
        [row] = store.query("SELECT model_id, kind, target, solution_tokens, rollout_tokens, training_tokens "
                            "FROM prm_models").as_dicts()
    assert result.model_id.startswith("prm-gold-") and (row["kind"], row["target"]) == ("prm", "gold")
    assert (row["solution_tokens"], row["rollout_tokens"]) == (6, 0) and row["training_tokens"] > 0
    assert json.loads((result.path / "prm.json").read_text())["target"] == "gold"
    assert result.train_examples == 4 and result.val_examples == 2
