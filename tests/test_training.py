"""Reward-model training on a real DuckDB file and the real SmolLM2 base model (tiny sizes)."""

from __future__ import annotations

import json

import pytest
import torch

from tasks.config import TrainConfig
from tasks.datasets import load_gsm8k
from tasks.store import Store
from tasks.training import (
    evaluate,
    load_examples,
    split_by_problem,
    step_loss,
    step_targets,
    train_reward_model,
)
from tasks.verifiers import ScoringSettings, SolutionScores, load_verifier
from tasks.verifiers.step_tag import BAD, GOOD, STEP_TAG, StepTagCodec
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
    assert step_targets(steps, TrainConfig(target="he")) == (1.0, 0.0, None)
    assert step_targets(steps, TrainConfig(target="he", after_first_error="keep")) == (1.0, 0.0, 1.0)
    assert step_targets(steps, TrainConfig(target="se", after_first_error="keep")) == (0.5, 0.0, 0.25)


def test_inferred_steps_train_on_their_he_or_carry_no_loss():
    # binary search on a wrong 4-step solution: step 1 inferred good, 2 measured (1 of 4 correct),
    # 3 inferred bad, 4 the final answer.
    steps = [{"he": True, "se": None, "inferred": True}, {"he": True, "se": 0.25, "inferred": False},
             {"he": False, "se": None, "inferred": True}, {"he": False, "se": 0.0, "inferred": False}]
    assert step_targets(steps, TrainConfig(target="he")) == (1.0, 1.0, 0.0, None)
    assert step_targets(steps, TrainConfig(target="he", inferred_labels="exclude")) == (None, 1.0, None, 0.0)
    assert step_targets(steps, TrainConfig(target="se")) == (None, 0.25, None, None)


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


def test_validation_problems_and_pooled_questions_are_never_trained_on(db_path):
    with Store(db_path) as store:
        seed_labelled_arith(store, 4)
        seed_labelled_arith(store, 2, split="validation")  # the split promotion is decided on
        # A train problem whose question also sits in an evaluation pool (a user's validation set
        # drawn from a train split): excluded because of the pool, whatever its split says.
        pooled = store.query("SELECT problem_id, question FROM problems WHERE split = 'train' "
                             "ORDER BY problem_id LIMIT 1").rows[0]
        store.insert_rows("eval_pools", [{"pool_id": "mine", "dataset": "arith", "split": "validation",
                                          "source": "generated", "n_max": 1}])
        store.insert_rows("eval_candidates", [{"pool_id": "mine", "problem_id": "x", "candidate_index": 0,
                                               "question": pooled[1].upper(), "gold_answer": "1", "text": "t",
                                               "steps": '["t"]', "correct": False, "grade_status": "ok",
                                               "num_tokens": 1}])
        examples, excluded = load_examples(store, TrainConfig(db=db_path))
    assert excluded == 3  # 2 validation problems + 1 pooled question
    assert pooled[0] not in {e.problem_id for e in examples} and len({e.problem_id for e in examples}) == 3


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
        row = store.query("SELECT model_id, kind, target, path, data_snapshot, val_metrics, promoted, run_id, "
                          "solution_tokens, rollout_tokens, training_tokens FROM prm_models").as_dicts()
        # seed_labelled_arith: one 1-token request per solution; 4 one-token rollouts from every
        # non-final prefix, no prefix shared between solutions.
        rollout_tokens = store.scalar("SELECT 4 * sum(num_steps - 1) FROM solutions")
    assert result.val_metrics["val_loss"] < result.val_metrics["base_val_loss"]
    assert result.val_metrics["saved_epoch"] == 1 and result.val_metrics["saved_because"] == "best validation loss"
    assert result.val_metrics["train_truncated_solutions"] == result.val_metrics["val_truncated_solutions"] == 0
    assert _checkpoint_val_loss(db_path, config, result.path) == pytest.approx(result.val_metrics["val_loss"], abs=1e-4)
    assert len(row) == 1 and row[0]["model_id"] == result.model_id and row[0]["kind"] == "prm"
    assert row[0]["promoted"] is False and row[0]["run_id"] == "test-run" and row[0]["target"] == "he"
    snapshot = json.loads(row[0]["data_snapshot"])
    assert snapshot["problems"] == 8 and snapshot["train_solutions"] + snapshot["val_solutions"] == 16
    assert (row[0]["solution_tokens"], row[0]["rollout_tokens"]) == (16, rollout_tokens)
    assert row[0]["training_tokens"] == result.val_metrics["train_tokens"] > 0
    assert (result.path / "prm.json").is_file() and not list((tmp_path / "models").glob(".*partial"))

    # Scoring: one forward pass per batch, one score per step, probabilities.
    model = load_verifier(result.path)
    calls = []
    model.model.base_model.register_forward_hook(lambda *args: calls.append(1))  # the transformer body
    solutions = [["2 + 3 = 5", "5 + 1 = 6", "The answer is 6."], ["2 + 3 = 6", "The answer is 7."], ["The answer is 6."]]
    scores = model.score("Ann has 2 pens, gets 3, then 1 more. How many?", solutions)
    assert len(calls) == 1
    assert [len(s.step_scores) for s in scores] == [3, 2, 1]
    assert not any(s.truncated for s in scores)
    assert all(0.0 < p < 1.0 for s in scores for p in s.step_scores)  # None is no float: fails the comparison
    assert model.max_length == model.model.config.max_position_embeddings  # the model's context, not training's


def _checkpoint_val_loss(db_path, config, path):
    """The validation loss of the checkpoint on disk, on the same validation split, recomputed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with Store(db_path) as store:
        examples, _ = load_examples(store, config)
    _, val = split_by_problem(examples, config.val_fraction, config.seed)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    codec = StepTagCodec(AutoTokenizer.from_pretrained(path), config.max_length, tag_every_step=config.kind == "prm")
    return evaluate(model, codec, val, config.batch_size, "cpu")["val_loss"]


def test_val_metrics_describe_the_saved_last_epoch_when_no_epoch_beats_the_base(db_path, tmp_path):
    # A learning rate this high makes validation loss worse each epoch (measured: base 1.93, then
    # 15.5, 27.7), so the last epoch is saved and it is not the epoch with the lowest loss.
    # max_length 94 cuts some solutions (their later steps carry no loss). Plain shuffled batches:
    # the losses above were measured in that order.
    with Store(db_path) as store:
        seed_labelled_arith(store, 4)
        config = TrainConfig(db=db_path, models_dir=tmp_path / "models", epochs=2, batch_size=4, lr=1e-2,
                             val_fraction=0.25, max_length=94, seed=0, length_grouping=False)
        result = train_reward_model(store, config)
        examples, _ = load_examples(store, config)
    losses = [h["val_loss"] for h in result.history]
    assert min(losses[1:]) > losses[0] and losses[-1] > min(losses[1:]), f"premise broken: {losses}"

    metrics = result.val_metrics
    assert _checkpoint_val_loss(db_path, config, result.path) == pytest.approx(metrics["val_loss"], abs=1e-4)
    assert metrics["saved_epoch"] == 2 and metrics["saved_because"] == "last epoch: no epoch beat the base model"
    assert {k: metrics[k] for k in result.history[-1]} == result.history[-1]
    assert metrics["base_val_loss"] == losses[0] and metrics["base_val_accuracy"] == result.history[0]["val_accuracy"]

    # Solutions the training encoding cut: fewer tags than steps.
    train, val = split_by_problem(examples, config.val_fraction, config.seed)
    codec = StepTagCodec(load_verifier(result.path).tokenizer, config.max_length)
    cut = [sum(len(codec.encode(e.question, e.steps)[1]) < len(e.steps) for e in part) for part in (train, val)]
    assert 0 < cut[0] < len(train)
    assert [metrics["train_truncated_solutions"], metrics["val_truncated_solutions"]] == cut


QUESTION = "Ben has 8 stickers. He finds 3 more, buys 5 more, gives 2 away, loses 1, then gets 4. How many?"
LONG = ["8 + 3 = 11", "11 + 5 = 16", "16 - 2 = 14", "14 - 1 = 13", "13 + 4 = 17", "The answer is 17."]


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def test_long_solutions_are_scored_on_their_final_steps(trained_models):
    prm_path, orm_path = trained_models["prm"].path, trained_models["orm"].path
    full = load_verifier(prm_path)  # the model's whole context: nothing is dropped
    tok = full.tokenizer
    prompt = _ids(tok, tok.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False,
                                               add_generation_prompt=True))
    tag, newline = _ids(tok, STEP_TAG), _ids(tok, "\n")
    pieces = [_ids(tok, s) for s in LONG]
    cost = [len(p) + len(tag) + len(newline) for p in pieces]

    whole = full.score(QUESTION, [LONG])[0]
    assert not whole.truncated and len(whole.step_scores) == len(LONG) and None not in whole.step_scores

    # Room for the question and the last two steps, one token short of the third last.
    small = load_verifier(prm_path, ScoringSettings(max_length=len(prompt) + sum(cost[-3:]) - 1))
    calls = []
    small.model.base_model.register_forward_hook(lambda *args: calls.append(1))
    long, short = small.score(QUESTION, [LONG, LONG[-2:]])
    assert len(calls) == 1
    assert long.step_scores[:-2] == (None,) * (len(LONG) - 2) and long.truncated
    assert all(isinstance(p, float) and 0 < p < 1 for p in long.step_scores[-2:])
    assert long.scored == long.step_scores[-2:] and long.last == long.step_scores[-1]
    # The same numbers as the model gives when it is shown only the question and those two steps.
    alone = full.score(QUESTION, [LONG[-2:]])[0]
    assert not alone.truncated and alone.step_scores == pytest.approx(long.step_scores[-2:], abs=1e-5)
    assert short == SolutionScores(short.step_scores, False) and None not in short.step_scores
    assert short.step_scores == pytest.approx(alone.step_scores, abs=1e-5)

    # Not even the final step fits: its last 2 tokens are kept, and its tag is still scored.
    tiny = load_verifier(prm_path, ScoringSettings(max_length=len(prompt) + 2 + len(tag) + len(newline)))
    cut = tiny.score(QUESTION, [LONG])[0]
    assert cut.truncated and cut.step_scores[:-1] == (None,) * (len(LONG) - 1)
    ids = prompt + pieces[-1][-2:] + tag
    with torch.no_grad():
        logits = full.model(input_ids=torch.tensor([ids])).logits[0, -1]
    good, bad = _ids(tok, GOOD)[0], _ids(tok, BAD)[0]
    assert cut.last == pytest.approx(torch.softmax(logits[[good, bad]], dim=-1)[0].item(), abs=1e-5)

    # ORM: one entry, the solution's score, from its final steps (only the final step is tagged).
    orm_cost = [len(p) + len(newline) for p in pieces]
    orm = load_verifier(orm_path, ScoringSettings(max_length=len(prompt) + len(tag) + sum(orm_cost[-3:]) - 1))
    [orm_long] = orm.score(QUESTION, [LONG])
    [orm_alone] = load_verifier(orm_path).score(QUESTION, [LONG[-2:]])
    assert orm_long.truncated and not orm_alone.truncated and len(orm_long.step_scores) == 1
    assert orm_long.last == pytest.approx(orm_alone.last, abs=1e-5)


def test_lora_training_registers_a_merged_checkpoint(db_path, tmp_path):
    from tasks.config import LoraSettings

    with Store(db_path) as store:
        seed_labelled_arith(store, 6)
        config = TrainConfig(db=db_path, models_dir=tmp_path / "models", epochs=1, batch_size=4, lr=1e-3,
                             val_fraction=0.34, lora=LoraSettings(r=4, target_modules=("q_proj", "v_proj")))
        result = train_reward_model(store, config)
    assert result.val_metrics["val_loss"] < result.val_metrics["base_val_loss"]  # the adapters learned
    files = {p.name for p in result.path.iterdir()}
    assert "model.safetensors" in files and not any("adapter" in name for name in files)  # merged, plain HF folder
    assert json.loads((result.path / "prm.json").read_text())["lora"]["r"] == 4
    # The merged checkpoint reproduces the saved epoch's validation loss, loaded as a plain model.
    assert _checkpoint_val_loss(db_path, config, result.path) == pytest.approx(result.val_metrics["val_loss"], abs=1e-3)
    [scores] = load_verifier(result.path).score(QUESTION, [LONG])
    assert len(scores.step_scores) == len(LONG)


def test_problem_limit_trains_on_the_first_problems_of_each_split(db_path):
    with Store(db_path) as store:
        seed_labelled_arith(store, 5)  # arith train indexes 0-4 (source rows)
        first = {p for (p,) in store.query("SELECT problem_id FROM problems WHERE source_row < 3").rows}
        examples, _ = load_examples(store, TrainConfig(db=db_path, problem_limit=3))
        everything, _ = load_examples(store, TrainConfig(db=db_path))
    assert {e.problem_id for e in examples} == first and len(examples) == 6
    assert len(everything) == 10
