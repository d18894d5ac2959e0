"""Reward-model training on a real DuckDB file and the real SmolLM2 base model (tiny sizes)."""

from __future__ import annotations

import json

import pytest
import torch

from tasks.config import TrainConfig
from tasks.datasets import load_gsm8k
from tasks.store import Store
from tasks.training import (
    RewardModel,
    _step_targets,
    load_examples,
    split_by_problem,
    step_loss,
    train_reward_model,
)
from tests.helpers import seed_labelled_arith


def test_one_loss_for_hard_and_soft_targets():
    log_good = torch.log(torch.tensor([0.8, 0.25]))
    log_bad = torch.log(torch.tensor([0.2, 0.75]))
    # hard: -(log 0.8 + log 0.75) / 2 ; soft t=0.5 on the first: -(0.5 log 0.8 + 0.5 log 0.2)
    hard = step_loss(log_good, log_bad, torch.tensor([1.0, 0.0]))
    soft = step_loss(log_good, log_bad, torch.tensor([0.5, 0.0]))
    assert hard.item() == pytest.approx(-(torch.log(torch.tensor(0.8)) + torch.log(torch.tensor(0.75))).item() / 2)
    expected_soft = -(0.5 * torch.log(torch.tensor(0.8)) + 0.5 * torch.log(torch.tensor(0.2))
                      + torch.log(torch.tensor(0.75))) / 2
    assert soft.item() == pytest.approx(expected_soft.item(), rel=1e-6)


def test_steps_after_the_first_error_are_dropped_or_kept():
    steps = [{"he": True, "se": 0.5}, {"he": False, "se": 0.0}, {"he": True, "se": 0.25}]
    assert _step_targets(steps, TrainConfig(target="he")) == (1.0, 0.0, None)
    assert _step_targets(steps, TrainConfig(target="he", after_first_error="keep")) == (1.0, 0.0, 1.0)
    assert _step_targets(steps, TrainConfig(target="se", after_first_error="keep")) == (0.5, 0.0, 0.25)


def test_evaluation_problems_are_never_trained_on(db_path):
    gsm8k_question = load_gsm8k("test", limit=1).problems[0].question
    with Store(db_path) as store:
        seed_labelled_arith(store, 4)
        seed_labelled_arith(store, 2, split="test")  # arith test split: an evaluation pool
        # A GSM8K test question smuggled in under another dataset name and a train split.
        store.query("UPDATE problems SET dataset = 'mine', question = ? WHERE problem_id = "
                    "(SELECT min(problem_id) FROM problems WHERE split = 'train')", ["  " + gsm8k_question.upper()])
        examples, excluded = load_examples(store, TrainConfig(db=db_path))
        problems = {r[0]: r[1:] for r in store.query("SELECT problem_id, dataset, split FROM problems").rows}
    assert excluded == 3
    assert all(problems[e.problem_id] == ("arith", "train") for e in examples)
    assert len({e.problem_id for e in examples}) == 3


def test_split_is_by_problem_and_deterministic(db_path):
    with Store(db_path) as store:
        seed_labelled_arith(store, 10)
        examples, _ = load_examples(store, TrainConfig(db=db_path))
    train, val = split_by_problem(examples, 0.3, seed=1)
    assert {e.problem_id for e in train}.isdisjoint({e.problem_id for e in val})
    assert len(train) + len(val) == len(examples) and val
    assert split_by_problem(examples, 0.3, seed=1) == (train, val)


def test_training_lowers_validation_loss_and_registers_the_model(db_path, tmp_path):
    with Store(db_path) as store:
        seed_labelled_arith(store, 8)
        config = TrainConfig(db=db_path, models_dir=tmp_path / "models", epochs=1, batch_size=4, lr=5e-5,
                             val_fraction=0.25)
        result = train_reward_model(store, config, run_id="test-run")
        row = store.query("SELECT model_id, kind, target, path, data_snapshot, val_metrics, promoted, run_id "
                          "FROM prm_models").as_dicts()
    assert result.val_metrics["val_loss"] < result.val_metrics["base_val_loss"]
    assert len(row) == 1 and row[0]["model_id"] == result.model_id and row[0]["kind"] == "prm"
    assert row[0]["promoted"] is False and row[0]["run_id"] == "test-run" and row[0]["target"] == "he"
    snapshot = json.loads(row[0]["data_snapshot"])
    assert snapshot["problems"] == 8 and snapshot["train_solutions"] + snapshot["val_solutions"] == 16
    assert (result.path / "prm.json").is_file() and not list((tmp_path / "models").glob(".*partial"))

    # Scoring: one forward pass per batch, one score per step, probabilities.
    model = RewardModel(result.path)
    calls = []
    model.model.base_model.register_forward_hook(lambda *args: calls.append(1))  # the transformer body
    solutions = [["2 + 3 = 5", "5 + 1 = 6", "The answer is 6."], ["2 + 3 = 6", "The answer is 7."], ["The answer is 6."]]
    scores = model.score("Ann has 2 pens, gets 3, then 1 more. How many?", solutions)
    assert len(calls) == 1
    assert [len(s) for s in scores] == [3, 2, 1]
    assert all(0.0 < p < 1.0 for s in scores for p in s)
