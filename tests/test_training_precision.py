"""The GPU precision policy, forced on CPU: the optimizer's fp32 master weights follow a pure-fp32
run, while bf16 weights (the old GPU path) swallow most AdamW updates at the default learning rate.

Also: gradient accumulation gives the whole batch's gradient, and gradient checkpointing changes
nothing but memory. The real SmolLM2-135M weights and tokenizer, cut to its first 4 decoder layers
(bf16 matmuls are slow on CPUs without AVX-512), a handful of optimizer steps."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from tasks.config import TrainConfig
from tasks.models import EMBEDDED_MODEL, resolve_model
from tasks.training import Example, Trainer, load_trainable_model, precision_policy
from tasks.verifiers.step_tag import StepTagCodec

STEPS = 3
LAYERS = 4
EXAMPLES = [
    Example("p1", "Ann has 2 pens and buys 3 more. How many pens?", ("2 + 3 = 5", "The answer is 5."), (1.0, 1.0)),
    Example("p2", "Tom has 9 cards and gives away 4. How many cards?", ("9 - 4 = 6", "The answer is 6."), (0.0, None)),
    Example("p3", "A box holds 4 rows of 6 eggs. How many eggs?", ("4 * 6 = 24", "The answer is 24."), (1.0, 0.5)),
    Example("p4", "Sam reads 7 pages a day for 3 days. How many pages?", ("7 * 3 = 21", "The answer is 20."),
            (1.0, 0.0)),
]


def _items(examples):
    return [(e.question, e.steps) for e in examples], [e.targets for e in examples]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """SmolLM2-135M's real weights, first 4 of its 30 decoder layers."""
    from transformers import AutoModelForCausalLM

    source = resolve_model(EMBEDDED_MODEL).path
    folder = tmp_path_factory.mktemp("smollm2-4-layers")
    AutoModelForCausalLM.from_pretrained(source, num_hidden_layers=LAYERS).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def _train(base, precision: str, steps: int = STEPS, **overrides):
    """Master weights before and after ``steps`` optimizer steps on the same batch."""
    config = TrainConfig(precision=precision, batch_size=len(EXAMPLES), **overrides)  # default lr 2e-5
    torch.manual_seed(0)
    policy = precision_policy(config.precision, "cpu")
    model = load_trainable_model(base, config, "cpu", policy)
    codec = StepTagCodec(AutoTokenizer.from_pretrained(base), config.max_length)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    trainer = Trainer(model, codec, config, "cpu", policy, total_steps=steps)
    items, targets = _items(EXAMPLES)
    encoded = codec.encode_many(items)
    for _ in range(steps):
        trainer.step(encoded, targets)
    after = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    return before, after, {n: p.dtype for n, p in model.named_parameters()}


def _layers(names):
    """Every linear and norm weight of the decoder (the embedding is tied and mostly untouched)."""
    return [n for n in names if n.endswith(".weight") and ("proj" in n or "norm" in n)]


def test_mixed_precision_master_weights_follow_fp32_and_bf16_weights_do_not(base):
    before, fp32, _ = _train(base, "fp32")
    _, mixed, mixed_dtypes = _train(base, "bf16-mixed")
    _, pure_bf16, bf16_dtypes = _train(base, "bf16")
    layers = _layers(before)
    assert len(layers) == LAYERS * 9 + 1  # 7 projections + 2 norms per decoder layer, and the final norm
    assert all(mixed_dtypes[n] == torch.float32 for n in layers)  # the optimizer updates fp32 weights
    assert all(bf16_dtypes[n] == torch.bfloat16 for n in layers)

    def changed(after, name):
        return (after[name] != before[name]).float().mean().item()

    for name in layers:
        update_fp32 = fp32[name] - before[name]
        update_mixed = mixed[name] - before[name]
        assert changed(fp32, name) > 0.99, name
        assert changed(mixed, name) > 0.99, name  # bf16 compute, yet every weight moved
        # Same updates up to bf16 compute noise in the gradients.
        relative = (update_mixed - update_fp32).norm() / update_fp32.norm()
        assert relative < 0.35, (name, relative.item())
        cosine = torch.nn.functional.cosine_similarity(update_mixed.flatten(), update_fp32.flatten(), dim=0)
        assert cosine > 0.94, (name, cosine.item())
    # The negative control: bf16 weights lose most updates (lr 2e-5 is below their resolution).
    mostly_unchanged = [n for n in layers if changed(pure_bf16, n) < 0.5]
    assert len(mostly_unchanged) > 0.9 * len(layers)
    # Measured: 3.5% of entries changed in the median layer, 22% at most (the smallest weights).
    assert sum(changed(pure_bf16, n) for n in layers) / len(layers) < 0.1


def _gradient(base, **overrides):
    config = TrainConfig(precision="fp32", batch_size=len(EXAMPLES), **overrides)
    policy = precision_policy("fp32", "cpu")
    model = load_trainable_model(base, config, "cpu", policy)
    codec = StepTagCodec(AutoTokenizer.from_pretrained(base), config.max_length)
    items, targets = _items(EXAMPLES)
    assert model.is_gradient_checkpointing == config.gradient_checkpointing
    loss = Trainer(model, codec, config, "cpu", policy, total_steps=1).accumulate_gradients(codec.encode_many(items),
                                                                                         targets)
    return loss, torch.cat([p.grad.flatten() for p in model.parameters()])


def test_accumulated_micro_batches_give_the_whole_batch_gradient(base):
    # The examples carry 2, 1, 2 and 2 targets: averaging per micro-batch would weight p2's one
    # step twice as much as the others, and a sum would scale the gradient by 7.
    loss, whole = _gradient(base)
    for micro in (1, 3):
        micro_loss, accumulated = _gradient(base, micro_batch_size=micro)
        assert micro_loss == pytest.approx(loss, rel=1e-5)
        assert ((accumulated - whole).norm() / whole.norm()).item() < 1e-5, micro


def test_gradient_checkpointing_changes_memory_not_gradients(base):
    loss, plain = _gradient(base)
    checkpointed_loss, checkpointed = _gradient(base, gradient_checkpointing=True)
    assert checkpointed_loss == pytest.approx(loss, rel=1e-6)
    assert ((checkpointed - plain).norm() / plain.norm()).item() < 1e-5
