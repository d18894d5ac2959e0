"""PAV training targets (``prmf train --target pav``): the squash, class-balance weights, targets
from a hand-built store (a real DuckDB file) against hand-computed numbers, and one real training
run of the tiny SmolLM2 model that registers a ``prm-pav-*`` model."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from pydantic import ValidationError

from tasks.config import TrainConfig
from tasks.labelling.advantages import squash_reward, unsquash_score
from tasks.store import Store
from tasks.training import (
    TrainingError,
    class_balance_weights,
    load_examples,
    load_training_data,
    step_loss,
    train_reward_model,
)
from tests.helpers import seed_labelled_arith, seed_prefix_rollouts, seed_store
from tests.test_training_precision import EXAMPLES, base  # noqa: F401  (base: SmolLM2 cut to 4 layers)


def test_squash_maps_the_reward_range_onto_zero_one_and_unsquash_inverts_it():
    # alpha 0.5: reward in [-0.5, 1.5], target (r + 0.5) / 2.
    assert squash_reward(-0.5, 0.5) == 0.0 and squash_reward(1.5, 0.5) == 1.0
    assert squash_reward(0.75, 0.5) == 0.625 and squash_reward(-0.125, 0.5) == 0.1875
    # alpha 0.2: (r + 0.2) / 1.4; alpha 0: the reward is Q_pi itself.
    assert squash_reward(0.5, 0.2) == pytest.approx(0.5)
    assert squash_reward(1.05, 0.2) == pytest.approx(1.25 / 1.4)
    assert squash_reward(0.3, 0.0) == pytest.approx(0.3)
    assert squash_reward(1.5 + 1e-12, 0.5) == 1.0  # rounding past the range is clipped
    assert unsquash_score(0.625, 0.5) == 0.75 and unsquash_score(0.0, 0.5) == -0.5 and unsquash_score(1.0, 0.2) == 1.2
    for reward in (-0.2, 0.0, 0.4, 1.2):
        assert unsquash_score(squash_reward(reward, 0.2), 0.2) == pytest.approx(reward)
    with pytest.raises(ValueError):
        squash_reward(0.5, -0.1)


def test_class_balance_weights_make_both_buckets_weigh_half():
    # 3 targets below 0.5, 1 at or above: w = 4 / (2 * 3) and 4 / (2 * 1).
    assert class_balance_weights([0.1, 0.2, 0.49, 0.5]) == pytest.approx((2 / 3, 2.0))
    assert class_balance_weights([0.0, 1.0]) == (1.0, 1.0)
    # One bucket empty: 2 / (2 * 2) = 0.5 for every tag, the plain mean; the empty one's weight is unused.
    assert class_balance_weights([0.7, 0.9]) == (0.0, 0.5)
    # The weighted mean: per-tag losses 1, 2, 3 (below) and 4 (above) -> (2/3 * 6 + 2 * 4) / 4 = 3.
    targets = torch.tensor([0.0, 0.0, 0.0, 1.0])
    log_good = torch.tensor([0.0, 0.0, 0.0, -4.0])
    log_bad = torch.tensor([-1.0, -2.0, -3.0, 0.0])
    weights = torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0])
    assert step_loss(log_good, log_bad, targets).item() == pytest.approx(2.5)
    assert step_loss(log_good, log_bad, targets, weights).item() == pytest.approx(3.0)


def _weighted_gradient(base_path, class_weights, **overrides):
    from transformers import AutoTokenizer

    from tasks.training import Trainer, load_trainable_model, precision_policy
    from tasks.verifiers.step_tag import StepTagCodec

    config = TrainConfig(precision="fp32", batch_size=len(EXAMPLES), **overrides)
    policy = precision_policy("fp32", "cpu")
    model = load_trainable_model(base_path, config, "cpu", policy)
    codec = StepTagCodec(AutoTokenizer.from_pretrained(base_path), config.max_length)
    encoded = codec.encode_many([(e.question, e.steps) for e in EXAMPLES])
    trainer = Trainer(model, codec, config, "cpu", policy, total_steps=1, class_weights=class_weights)
    loss = trainer.accumulate_gradients(encoded, [e.targets for e in EXAMPLES])
    return loss, torch.cat([p.grad.flatten() for p in model.parameters()])


def test_class_weighted_micro_batches_give_the_whole_batch_gradient(base):  # noqa: F811
    # Targets 1, 1 | 0 | 1, 0.5 | 1, 0: 2 below 0.5, 5 at or above -> w = 7/4 and 7/10.
    weights = class_balance_weights([t for e in EXAMPLES for t in e.targets if t is not None])
    assert weights == pytest.approx((1.75, 0.7))
    loss, whole = _weighted_gradient(base, weights)
    for micro in (1, 3):
        micro_loss, accumulated = _weighted_gradient(base, weights, micro_batch_size=micro)
        assert micro_loss == pytest.approx(loss, rel=1e-5)
        assert ((accumulated - whole).norm() / whole.norm()).item() < 1e-5, micro
    plain_loss, plain = _weighted_gradient(base, None)
    assert plain_loss != pytest.approx(loss, rel=1e-3) and ((plain - whole).norm() / whole.norm()).item() > 1e-3


def test_prover_names_are_validated():
    assert TrainConfig(target="pav", prover="bo1").prover == "bo1"
    assert TrainConfig(prover="Qwen/Qwen2.5-Math-7B@0123abcd/N8").prover == "Qwen/Qwen2.5-Math-7B@0123abcd/N8"
    for bad in ("bo0", "bo", "best_of_4", "m@xyz/N4", "m@0123abcd/N0", "m@0123abcd"):
        with pytest.raises(ValidationError, match="neither bo<K>"):
            TrainConfig(prover=bad)
    with pytest.raises(ValidationError):
        TrainConfig(alpha=-0.5)


A, B = '{"t": "A"}', '{"t": "B"}'  # two rollout sampling settings (JSON, as stored)


def _md5_8(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()[:8]


def _seed(store: Store, outcomes: dict[str, dict[int, int]]) -> None:
    """p1 (arith train, question "q"), one wrong 3-step solution s1 (steps a b c, prefixes h1..h3),
    and per sampling setting (completer m, N 4) the number of correct rollouts of 4 from the
    question (0) and from prefixes 1 and 2."""
    seed_store(store, {}, False, [True, False, False])
    seed_prefix_rollouts(store, outcomes)


def test_pav_targets_match_hand_computed_rewards(db_path):
    # Base A: question 1/4, prefix 1 2/4, prefix 2 not rolled out. Prover B: 2/4, 4/4, 1/4.
    with Store(db_path) as store:
        _seed(store, {A: {0: 1, 1: 2}, B: {0: 2, 1: 4, 2: 1}})
        prover_b = f"m@{_md5_8(B)}/N4"
        # Prover B over base A (the only other evaluation). Q_pi(A) = 0.5, -, 0 (the wrong outcome);
        # Q_B = 0.5, 1, 0.25, 0 -> A_B = 0.5, -0.75, -0.25; reward = 0.5 + 0.25 = 0.75, none (no
        # Q_pi for prefix 2), 0 - 0.125 = -0.125; squashed (r + 0.5) / 2 = 0.625, -, 0.1875.
        data = load_training_data(store, TrainConfig(db=db_path, target="pav", prover=prover_b))
        [example] = data.examples
        assert example.targets == (0.625, None, 0.1875)
        assert data.meta == {"prover": prover_b, "alpha": 0.5, "squash": "affine",
                             "pav_base": {"completer": "m", "params": A, "budget": 4}}
        assert load_examples(store, TrainConfig(db=db_path, target="pav", prover=prover_b))[0] == data.examples

        # Best-of-2: base A rewards step 1 only, base B all three, so B is the base.
        # Q_pi(B) = 0.5, 1, 0.25, 0; Q_bo2 = 0.75, 1, 0.4375, 0 -> A = 0.25, -0.5625, -0.4375;
        # reward = 1.125, -0.03125, -0.21875; squashed 0.8125, 0.234375, 0.140625.
        data = load_training_data(store, TrainConfig(db=db_path, target="pav", prover="bo2"))
        assert data.examples[0].targets == (0.8125, 0.234375, 0.140625)
        assert data.meta["pav_base"] == {"completer": "m", "params": B, "budget": 4}
        # alpha 0.2: reward = 1.05, 0.1375, -0.0875; squashed (r + 0.2) / 1.4.
        data = load_training_data(store, TrainConfig(db=db_path, target="pav", prover="bo2", alpha=0.2))
        assert data.examples[0].targets == pytest.approx((1.25 / 1.4, 0.3375 / 1.4, 0.1125 / 1.4))
        assert data.meta["alpha"] == 0.2

        with pytest.raises(TrainingError, match=rf"'other@0123abcd/N4' is not in the store; provers present: "
                                                rf"bo<K>, m@{_md5_8(A)}/N4, m@{_md5_8(B)}/N4"):
            load_examples(store, TrainConfig(db=db_path, target="pav", prover="other@0123abcd/N4"))


def test_pav_base_ties_go_to_the_smallest_sampling(db_path):
    # Both evaluations rolled out everything: bo4 rewards 3 steps under either, A < B.
    # Q_pi(A) = 0.25, 0.5, 0, 0; Q_bo4 = 1 - 0.75^4 = 0.68359375, 0.9375, 0, 0;
    # A = 0.25390625, -0.9375, 0; reward = 0.626953125, -0.46875, 0; squashed 0.5634765625, 0.015625, 0.25.
    with Store(db_path) as store:
        _seed(store, {A: {0: 1, 1: 2, 2: 0}, B: {0: 2, 1: 4, 2: 1}})
        data = load_training_data(store, TrainConfig(db=db_path, target="pav", prover="bo4"))
    assert data.meta["pav_base"]["params"] == A
    assert data.examples[0].targets == (0.5634765625, 0.015625, 0.25)
    assert data.snapshot["pav_rewarded_steps"] == 3


def test_a_store_without_prefix_values_names_no_prover(db_path):
    # Labelled by early stopping only: every step has a label, but an early-stopped rate is no value.
    with Store(db_path) as store:
        seed_store(store, {}, False, [True, False, False])
        for step in (1, 2):
            store.insert_rows("work_units", [{
                "unit_id": f"e{step}", "problem_id": "p1", "prefix_hash": f"h{step}", "completer_model": "m",
                "params": "{}", "strategy": "early_stop", "budget": 4, "n": 1, "k": 1, "round": 0, "solution_id": "s1",
                "step_index": step, "run_id": "r"}])
            store.insert_rows("rollouts", [{
                "rollout_id": f"e{step}:0", "unit_id": f"e{step}", "sample_index": 0, "solution_id": "s1",
                "step_index": step, "text": "x", "answer": None, "correct": True, "grade_status": "ok",
                "num_tokens": 3, "run_id": "r"}])
        assert len(load_examples(store, TrainConfig(db=db_path))[0]) == 1  # fully labelled for he
        with pytest.raises(TrainingError, match="provers present: none"):
            load_examples(store, TrainConfig(db=db_path, target="pav"))


def test_pav_training_registers_a_pav_model(db_path, tmp_path, base):  # noqa: F811
    # The smallest real run: 3 problems (2 train, 1 validation), one optimizer step, SmolLM2 cut to
    # 4 layers (the whole model takes over a minute on 2 busy cores).
    with Store(db_path) as store:
        seed_labelled_arith(store, 3)  # no question (root) rollouts: step 1 of each solution has no reward
        config = TrainConfig(db=db_path, models_dir=tmp_path / "models", base_model=str(base), epochs=1,
                             batch_size=4, lr=5e-5,
                             val_fraction=0.34, target="pav", prover="bo4", alpha=0.5, class_balance=True)
        examples, _ = load_examples(store, config)
        result = train_reward_model(store, config, run_id="test-run")
        row = store.query("SELECT model_id, target, data_snapshot, hyperparameters FROM prm_models").as_dicts()
    # Right solutions: Q = 0.5 on every prefix, a correct outcome: middle steps 0.5, the last
    # 1 + 0.5 (1 - 0.9375) = 1.03125 -> 0.765625. Wrong ones: Q = 0 throughout -> 0.25.
    assert all(e.targets[0] is None for e in examples)
    assert sorted({t for e in examples for t in e.targets[1:]}) == [0.25, 0.5, 0.765625]
    assert result.model_id.startswith("prm-pav-") and len(row) == 1 and row[0]["target"] == "pav"
    meta = json.loads((result.path / "prm.json").read_text())
    assert meta["target"] == "pav" and meta["prover"] == "bo4" and meta["alpha"] == 0.5 and meta["squash"] == "affine"
    assert meta["pav_base"] == {"completer": "seed", "params": "{}", "budget": 4}
    assert json.loads(row[0]["data_snapshot"])["pav_base"] == meta["pav_base"]
    assert json.loads(row[0]["hyperparameters"])["class_balance"] is True
    # Each problem's right and wrong solutions have as many rewarded steps: the buckets are even.
    assert result.val_metrics["class_weights"] == {"below_half": 1.0, "at_least_half": 1.0}


def test_a_prover_without_rewards_on_the_training_solutions_is_an_error(db_path):
    # Prefix 1 rolled out in full, prefix 2 only early-stopped: the solution is fully labelled, but
    # step 1 lacks the question's value, step 2 its own and step 3 its predecessor's.
    with Store(db_path) as store:
        _seed(store, {A: {1: 2}})
        store.insert_rows("work_units", [{
            "unit_id": "e2", "problem_id": "p1", "prefix_hash": "h2", "completer_model": "m", "params": A,
            "strategy": "early_stop", "budget": 4, "n": 1, "k": 1, "round": 0, "solution_id": "s1", "step_index": 2,
            "run_id": "r"}])
        store.insert_rows("rollouts", [{
            "rollout_id": "e2:0", "unit_id": "e2", "sample_index": 0, "solution_id": "s1", "step_index": 2,
            "text": "x", "answer": None, "correct": True, "grade_status": "ok", "num_tokens": 3, "run_id": "r"}])
        assert len(load_examples(store, TrainConfig(db=db_path))[0]) == 1
        with pytest.raises(TrainingError, match="no step of the training solutions has a reward under prover 'bo4'"):
            load_examples(store, TrainConfig(db=db_path, target="pav"))
