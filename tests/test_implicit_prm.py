"""The implicit PRM (``prmf train --kind implicit``): the losses and read-outs against hand-computed
numbers on a two-token vocabulary, the outcome data from a hand-built store (a real DuckDB file),
and one real training run of SmolLM2 cut to 4 layers that registers an ``implicit-*`` model, loads
it through ``load_verifier`` and scores with it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoTokenizer

from tasks.config import TrainConfig
from tasks.models import EMBEDDED_MODEL, resolve_model
from tasks.store import Store
from tasks.training import Example, train_reward_model
from tasks.training.implicit import _log_ratios, accumulate_implicit_gradients, dpo_pairs, load_outcome_data
from tasks.training.loop import load_trainable_model, precision_policy
from tasks.verifiers import VerifierError, load_verifier
from tasks.verifiers.implicit import (
    ImplicitCodec,
    ImplicitPRM,
    ce_loss,
    pad_token_id,
    cumulative_rewards,
    dpo_loss,
    per_token_log_ratios,
    read_out,
    step_rewards,
    token_log_probs,
)
from tests.helpers import seed_labelled_arith
from tests.test_training_precision import base  # noqa: F401  (base: SmolLM2 cut to 4 layers)



@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on these shared 2-core machines a second one mostly spin-waits (under
    load, scoring one solution with the 4-layer model took 2.0-2.7 s with 2 threads, 0.17 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LN3 = math.log(3.0)
LN7 = math.log(7.0)

# Three response tokens over a vocabulary {0, 1}; steps: tokens 1-2, token 3.
#   token 1 = 0: policy logits [ln 3, 0] -> p = 3/4;  reference [0, 0]    -> p = 1/2;  ratio 3/2
#   token 2 = 1: policy logits [ln 3, 0] -> p = 1/4;  reference [0, 0]    -> p = 1/2;  ratio 1/2
#   token 3 = 0: policy logits [0, 0]    -> p = 1/2;  reference [0, ln 7] -> p = 1/8;  ratio 4
# Step 1: ln(3/2) + ln(1/2) = ln(3/4); step 2: ln 4; the response: ln 3.
POLICY = torch.tensor([[LN3, 0.0], [LN3, 0.0], [0.0, 0.0]])
REFERENCE = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, LN7]])
TOKENS = torch.tensor([0, 1, 0])


def test_log_ratios_and_read_outs_on_a_two_token_vocabulary():
    assert token_log_probs(POLICY, TOKENS).tolist() == pytest.approx([math.log(0.75), math.log(0.25), math.log(0.5)])
    assert token_log_probs(REFERENCE, TOKENS).tolist() == pytest.approx([math.log(0.5), math.log(0.5), math.log(0.125)])
    ratios = per_token_log_ratios(POLICY, REFERENCE, TOKENS)
    assert ratios.tolist() == pytest.approx([math.log(1.5), math.log(0.5), math.log(4.0)])
    by_step = [ratios[:2], ratios[2:]]
    # beta 1: r = ln(3/4) = -0.2876820725, ln 4 = 1.3862943611; q = ln(3/4), ln 3 = 1.0986122887.
    assert step_rewards(by_step, 1.0) == pytest.approx([-0.2876820725, 1.3862943611])
    assert cumulative_rewards(by_step, 1.0) == pytest.approx([-0.2876820725, 1.0986122887])
    # beta 0.5 halves every reward.
    assert step_rewards(by_step, 0.5) == pytest.approx([-0.1438410362, 0.6931471806])
    assert cumulative_rewards(by_step, 0.5) == pytest.approx([-0.1438410362, 0.5493061443])
    # Read-outs of the beta-1 rewards: sigmoid(ln(3/4)) = 0.75 / 1.75 = 3/7, sigmoid(ln 3) = 3/4.
    rewards = [-0.2876820725, 1.3862943611]
    assert read_out(rewards, "step") == rewards
    assert read_out(rewards, "cumulative") == pytest.approx([-0.2876820725, 1.0986122887])
    assert read_out(rewards, "sigmoid") == pytest.approx([3 / 7, 0.75])
    assert read_out([-800.0, 1600.0], "sigmoid") == pytest.approx([0.0, 1.0])  # no overflow
    # Plain floats work as well as tensors.
    assert step_rewards([[math.log(1.5), math.log(0.5)], []], 2.0) == pytest.approx([2 * -0.2876820725, 0.0])


def test_ce_and_dpo_losses_match_hand_computed_values():
    # log ratio ln 3, beta 1: sigmoid = 3/4. Correct: -ln(3/4) = 0.2876820725; incorrect: -ln(1/4) = ln 4.
    logratio = torch.tensor([LN3, LN3])
    assert ce_loss(logratio, torch.tensor([1.0, 0.0]), 1.0).tolist() == pytest.approx([0.2876820725, 1.3862943611])
    # beta 0.5 on ln 9 is the same reward, ln 3.
    assert ce_loss(torch.tensor(2 * LN3), torch.tensor(1.0), 0.5).item() == pytest.approx(0.2876820725)
    # A zero log ratio (the untrained model): ln 2 whatever the label.
    assert ce_loss(torch.zeros(2), torch.tensor([1.0, 0.0]), 0.05).tolist() == pytest.approx([0.6931471806] * 2)
    # DPO: -ln sigmoid(beta (w - l)). w - l = ln 3, beta 1: ln(4/3); reversed: ln 4; beta 0.5 on ln 9: ln(4/3).
    assert dpo_loss(torch.tensor(LN3), torch.tensor(0.0), 1.0).item() == pytest.approx(0.2876820725)
    assert dpo_loss(torch.tensor(0.0), torch.tensor(LN3), 1.0).item() == pytest.approx(1.3862943611)
    assert dpo_loss(torch.tensor(LN3), torch.tensor(-LN3), 0.5).item() == pytest.approx(0.2876820725)
    # Large rewards stay finite (logsigmoid).
    assert math.isfinite(ce_loss(torch.tensor(-1e4), torch.tensor(1.0), 1.0).item())


def test_implicit_settings_are_validated():
    config = TrainConfig(kind="implicit", loss="dpo", beta=0.1)
    assert config.beta == 0.1 and config.loss == "dpo" and TrainConfig().beta == 0.05 and TrainConfig().loss == "ce"
    for bad in ({"kind": "implicit", "beta": 0.0}, {"kind": "implicit", "target": "se"},
                {"kind": "implicit", "class_balance": True}, {"kind": "prm", "loss": "dpo"}, {"loss": "kto"}):
        with pytest.raises(ValidationError):
            TrainConfig(**bad)


def test_outcome_data_keeps_every_graded_solution_and_no_evaluation_problem(db_path):
    with Store(db_path) as store:
        seed_labelled_arith(store, 3)  # 3 train problems, a right and a wrong solution each
        seed_labelled_arith(store, 2, split="test")  # evaluation problems: never trained on
        store.query("UPDATE solutions SET grade_status = 'timeout' WHERE solution_id = (SELECT min(solution_id) "
                    "FROM solutions s JOIN problems p USING (problem_id) WHERE split = 'train')")
        data = load_outcome_data(store, TrainConfig(db=db_path, kind="implicit"))
    assert data.excluded == 2
    assert len(data.examples) == 5 and len({e.problem_id for e in data.examples}) == 3  # the timed-out one is left out
    assert {e.targets for e in data.examples} == {(1.0,), (0.0,)}  # correctness, not step labels
    assert all(e.steps[-1].startswith("The answer is") for e in data.examples)
    pairs = dpo_pairs(data.examples)
    # Two problems have both kinds (one pair each); the third lost a solution to the timeout.
    assert len(pairs) == 2
    assert all(data.examples[w].targets == (1.0,) and data.examples[l_].targets == (0.0,)
               and data.examples[w].problem_id == data.examples[l_].problem_id for w, l_ in pairs)


def test_dpo_pairs_cycle_through_the_shorter_list():
    examples = [Example("a", "q", ("s",), (t,)) for t in (1.0, 0.0, 0.0, 0.0)] + [Example("b", "r", ("s",), (1.0,))]
    assert dpo_pairs(examples) == [(0, 1), (0, 2), (0, 3)]


ITEMS = [
    ("What is 2 + 3?", ["2 + 3 = 5", "The answer is 5."]),
    ("Tom has 9 cards and gives away 4. How many cards?", ["9 - 4 = 5", "The answer is 5."]),
    ("Sam reads 7 pages a day for 3 days, then 1 page less. How many pages?",
     ["7 * 3 = 21", "21 - 1 = 20", "The answer is 20."]),
    ("What is 2 + 3?", ["2 + 3 = 6"]),
]


def _reference_step_rewards(verifier: ImplicitPRM, question: str, steps: list[str]) -> list[float]:
    """r_t recomputed the plain way: full logits of both models, log_softmax, each step's tokens
    (its text, then the newline) summed."""
    tok = verifier.tokenizer
    prompt = tok(tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True), add_special_tokens=False).input_ids
    spans = [tok(s, add_special_tokens=False).input_ids + tok("\n", add_special_tokens=False).input_ids for s in steps]
    ids = torch.tensor([prompt + [t for s in spans for t in s]])
    with torch.no_grad():
        log_ratio = (torch.log_softmax(verifier.model(ids).logits.float(), -1)
                     - torch.log_softmax(verifier.reference(ids).logits.float(), -1))
    ratio = log_ratio[0, :-1].gather(-1, ids[0, 1:, None])[:, 0]
    rewards, at = [], len(prompt) - 1  # position i predicts token i + 1
    for span in spans:
        rewards.append(verifier.beta * ratio[at : at + len(span)].double().sum().item())
        at += len(span)
    return rewards


def test_implicit_training_registers_a_verifier_that_scores_steps(db_path, tmp_path, base):  # noqa: F811
    # 3 problems (2 train, 1 validation), 4 training solutions, one optimizer step per epoch.
    with Store(db_path) as store:
        seed_labelled_arith(store, 3)
        config = TrainConfig(db=db_path, models_dir=tmp_path / "models", base_model=str(base), kind="implicit",
                             epochs=2, batch_size=4, lr=1e-4, val_fraction=0.34, beta=0.05)
        result = train_reward_model(store, config, run_id="test-run")
        [row] = store.query("SELECT model_id, kind, target, base_model, hyperparameters, val_metrics, "
                            "solution_tokens, rollout_tokens, training_tokens FROM prm_models").as_dicts()
        assert store.scalar("SELECT count(*) FROM rollouts") > 0  # stored, but not what an implicit PRM needs
    assert result.model_id.startswith("implicit-ce-") and row["model_id"] == result.model_id
    assert (row["kind"], row["target"], row["base_model"]) == ("implicit", "outcome", str(base.resolve()))
    assert result.train_examples == 4 and result.val_examples == 2
    assert "target" not in json.loads(row["hyperparameters"]) and json.loads(row["hyperparameters"])["beta"] == 0.05
    metrics = json.loads(row["val_metrics"])
    # Cost: the 6 solutions' one-token requests, no rollouts; each epoch trains on the 4 training
    # solutions' whole sequences.
    assert (row["solution_tokens"], row["rollout_tokens"]) == (6, 0)
    assert row["training_tokens"] == metrics["train_tokens"] > 0 and row["training_tokens"] % 2 == 0
    assert metrics["base_val_loss"] == pytest.approx(math.log(2), abs=1e-4)  # untrained: log ratio 0
    assert metrics["saved_epoch"] in (1, 2) and math.isfinite(metrics["val_loss"])
    meta = json.loads((result.path / "prm.json").read_text())
    assert meta["kind"] == "implicit" and meta["beta"] == 0.05 and meta["loss"] == "ce" and meta["readout"] == "step"
    assert meta["reference"] == {"setting": str(base), "identity": str(base.resolve()), "path": str(base.resolve())}

    verifier = load_verifier(result.path)
    assert isinstance(verifier, ImplicitPRM) and verifier.kind == "implicit" and verifier.readout == "step"
    step = verifier.score_many(ITEMS)
    cumulative = verifier.score_many(ITEMS, readout="cumulative")
    squashed = verifier.score_many(ITEMS, readout="sigmoid")
    for (_, steps), r, q, s in zip(ITEMS, step, cumulative, squashed):
        assert len(r.step_scores) == len(q.step_scores) == len(steps) and not r.truncated
        assert all(isinstance(x, float) and math.isfinite(x) for x in r.step_scores + q.step_scores)
        assert sum(r.step_scores) == pytest.approx(q.last, abs=1e-5)
        assert list(q.step_scores) == pytest.approx(list(math.fsum(r.step_scores[: t + 1]) for t in range(len(steps))),
                                                    abs=1e-9)
        assert all(0 < p < 1 for p in s.step_scores)
        assert list(s.step_scores) == pytest.approx([1 / (1 + math.exp(-x)) for x in q.step_scores], abs=1e-12)
    # The trained model moved away from its reference, and its rewards are what the plain
    # full-logits computation gives.
    assert max(abs(x) for r in step for x in r.step_scores) > 1e-4
    for (question, steps), r in zip(ITEMS, step):
        assert list(r.step_scores) == pytest.approx(_reference_step_rewards(verifier, question, steps), abs=1e-5)
    # Batching and padding change nothing: each item alone scores as in the batch.
    for item, r in zip(ITEMS, step):
        [alone] = verifier.score_many([item])
        assert list(alone.step_scores) == pytest.approx(list(r.step_scores), abs=1e-4)
    # A prefix scores as the first steps of the whole solution (no end-of-turn token after the last step).
    [prefix] = verifier.score_many([(ITEMS[2][0], ITEMS[2][1][:2])])
    assert list(prefix.step_scores) == pytest.approx(list(step[2].step_scores[:2]), abs=1e-4)


def test_codec_spans_and_tail_truncation():
    tok = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_MODEL).path)
    question, steps = ITEMS[2]
    [tokenized] = ImplicitCodec(tok, 4096).tokenize_many([(question, steps)])
    prompt, spans = tokenized
    assert tok.decode(prompt).endswith("assistant\n") and question in tok.decode(prompt)
    assert [tok.decode(s) for s in spans] == [s + "\n" for s in steps]  # each step's span: its text, the newline
    ids, start, lengths = ImplicitCodec.encode(tokenized)
    assert start == len(prompt) and lengths == [len(s) for s in spans] and len(ids) == len(prompt) + sum(lengths)
    # Room for the last two steps only: the first is dropped, nothing is cut.
    codec = ImplicitCodec(tok, len(prompt) + len(spans[1]) + len(spans[2]))
    (ids, start, lengths), first, truncated = codec.encode_tail(tokenized)
    assert (first, truncated, lengths) == (1, True, [len(spans[1]), len(spans[2])])
    assert ids == prompt + spans[1] + spans[2]
    # Room for 3 tokens: the final step's last 3 tokens.
    (ids, _, lengths), first, truncated = ImplicitCodec(tok, len(prompt) + 3).encode_tail(tokenized)
    assert (first, truncated, lengths, ids[len(prompt):]) == (2, True, [3], spans[2][-3:])
    assert ImplicitCodec(tok, 4096).encode_tail(tokenized)[1:] == (0, False)
    with pytest.raises(VerifierError, match="no room for a step"):
        ImplicitCodec(tok, len(prompt)).encode_tail(tokenized)


def test_dpo_training_registers_an_implicit_dpo_model(db_path, tmp_path, base):  # noqa: F811
    # One epoch of DPO on the 2 training pairs, one pair per pass (gradient accumulation).
    with Store(db_path) as store:
        seed_labelled_arith(store, 3)
        config = TrainConfig(db=db_path, models_dir=tmp_path / "models", base_model=str(base), kind="implicit",
                             loss="dpo", epochs=1, batch_size=2, micro_batch_size=1, lr=1e-4, val_fraction=0.34)
        result = train_reward_model(store, config)
        [(kind, target)] = store.query("SELECT kind, target FROM prm_models").rows
    assert result.model_id.startswith("implicit-dpo-") and (kind, target) == ("implicit", "outcome")
    assert (result.val_metrics["train_pairs"], result.val_metrics["val_pairs"]) == (2, 1)
    assert result.val_metrics["base_val_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert json.loads((result.path / "prm.json").read_text())["loss"] == "dpo"
    [scores] = load_verifier(result.path).score_many([ITEMS[0]], readout="cumulative")
    assert len(scores.step_scores) == 2 and all(math.isfinite(x) for x in scores.step_scores)


# Two problems with a correct and an incorrect solution each, of different lengths.
ACCUMULATION_ITEMS = [
    ("Ann has 2 pens and buys 3 more. How many pens?", ("2 + 3 = 5", "The answer is 5."), 1.0),
    ("Ann has 2 pens and buys 3 more. How many pens?", ("2 + 3 = 6", "6 - 0 = 6", "The answer is 6."), 0.0),
    ("Tom has 9 cards and gives away 4. How many cards?", ("9 - 4 = 5", "The answer is 5."), 1.0),
    ("Tom has 9 cards and gives away 4. How many cards?", ("The answer is 13.",), 0.0),
]


def _implicit_gradient(base, loss: str, micro: int | None):  # noqa: F811
    config = TrainConfig(kind="implicit", loss=loss, precision="fp32", batch_size=4 if loss == "ce" else 2,
                         micro_batch_size=micro, beta=0.5)
    policy = precision_policy("fp32", "cpu")
    torch.manual_seed(0)
    model = load_trainable_model(base, config, "cpu", policy)
    tokenizer = AutoTokenizer.from_pretrained(base)
    codec = ImplicitCodec(tokenizer, config.max_length)
    encoded = [codec.encode(t) for t in codec.tokenize_many([(q, steps) for q, steps, _ in ACCUMULATION_ITEMS])]
    pad_id = pad_token_id(tokenizer)
    # A reference that is not the model (the initial model's log-probabilities minus a constant per
    # solution), so the log ratios are not all 0 and the solutions' gradients differ in scale.
    ref = _log_ratios(model, encoded, None, 4, "cpu", policy, pad_id) - torch.tensor([3.0, -2.0, 1.0, 0.5])
    labels = torch.tensor([label for *_, label in ACCUMULATION_ITEMS])
    batch = [(0,), (1,), (2,), (3,)] if loss == "ce" else [(0, 1), (2, 3)]
    model.zero_grad(set_to_none=True)
    total = accumulate_implicit_gradients(model, batch, encoded, ref, labels, config, "cpu", policy, pad_id)
    return total, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("loss", ["ce", "dpo"])
def test_implicit_accumulated_micro_batches_give_the_whole_batch_gradient(base, loss):  # noqa: F811
    whole_loss, whole = _implicit_gradient(base, loss, None)
    # The loss is the batch mean, by hand: pi_theta is the model the reference was taken from, so
    # each solution's log ratio is its offset (3, -2, 1, 0.5), times beta 0.5.
    x = 0.5 * torch.tensor([3.0, -2.0, 1.0, 0.5])
    if loss == "ce":
        labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
        expected = -(labels * torch.nn.functional.logsigmoid(x) + (1 - labels) * torch.nn.functional.logsigmoid(-x))
    else:
        expected = -torch.nn.functional.logsigmoid(torch.stack([x[0] - x[1], x[2] - x[3]]))
    assert whole_loss == pytest.approx(expected.mean().item(), rel=1e-4)
    for micro in (1, 3) if loss == "ce" else (1,):
        micro_loss, accumulated = _implicit_gradient(base, loss, micro)
        # fp32 sums in another order: relative 1.5e-5 (loss) and 1.7e-5 (gradient) measured on the
        # CI and this machine's CPU on 2026-11-27 (under 1e-5 before); a wrong accumulation (a
        # missing 1/k scale) is off by tens of percent.
        assert micro_loss == pytest.approx(whole_loss, rel=1e-4)
        assert ((accumulated - whole).norm() / whole.norm()).item() < 1e-4, micro
