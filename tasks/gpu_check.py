"""``prmf doctor --gpu``: the GPU code paths, run for real on a CUDA machine without a model hub.

From a model *config* (config.json + tokenizer files, no weights) it builds a random-weight model
and checks, printing what ran:

1. training: a few PRM optimizer steps with the GPU precision policy (``bf16-mixed``) change every
   linear and norm weight (the old bf16-weights path left most of them unchanged), and the
   effective batch is accumulated exactly from micro-batches;
2. scoring: the checkpoint saved as a verifier scores a batch on the GPU like the fp32 CPU
   reference, and batching does not change the scores;
3. generation: the ``hf`` completer samples on the GPU (temperature 0 with n > 1 included).

Random weights: code paths and speed, not quality. Without CUDA the check is skipped with a
one-line reason, so it can sit in any test suite.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json", "vocab.json", "merges.txt")
QUESTION = "Ann has 2 pens and buys 3 more. How many pens does she have?"
SOLUTIONS = [["2 + 3 = 5", "The answer is 5."], ["2 + 3 = 6", "6 - 1 = 5", "The answer is 5."],
             ["She has 2 pens.", "She buys 3 more.", "2 + 3 = 5", "The answer is 5."], ["The answer is 7."]]


@dataclass(frozen=True)
class GpuCheck:
    name: str
    ok: bool
    detail: str


def cuda_skip_reason() -> str | None:
    """Why the GPU check cannot run here (None: it can)."""
    try:
        import torch
    except ImportError as exc:
        return f"torch is not importable ({exc})"
    if not torch.cuda.is_available():
        return f"CUDA is not available (torch {torch.__version__}, torch.cuda.is_available() is False)"
    return None


def random_model(config_dir: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """A random-weight causal LM with ``config_dir``'s architecture and tokenizer, saved in ``out``
    (initialised on the GPU when there is one: a 1.5B model's init takes seconds there)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (config_dir / name).is_file():
            shutil.copy(config_dir / name, out / name)
    return out


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so wall-clock timings measure it (no-op on CPU)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _examples() -> list:
    """Training examples of the check: the fixed solutions with alternating step targets."""
    from tasks.training import Example

    return [Example(f"p{i}", QUESTION, tuple(s), tuple(float(j % 2) for j in range(len(s))))
            for i, s in enumerate(SOLUTIONS)]


def _train_check(model_dir: Path, device: str, steps: int = 3) -> tuple[list[GpuCheck], object]:
    import torch
    from transformers import AutoTokenizer

    from tasks.config import TrainConfig
    from tasks.training import Trainer, load_trainable_model, precision_policy
    from tasks.verifiers.step_tag import StepTagCodec

    examples = _examples()
    codec = StepTagCodec(AutoTokenizer.from_pretrained(model_dir), 512)
    encoded = codec.encode_many([(e.question, e.steps) for e in examples])
    targets = [e.targets for e in examples]
    checks, kept = [], None
    changed_by_policy = {}
    for precision in ("bf16-mixed", "bf16"):
        config = TrainConfig(precision=precision, batch_size=len(examples))
        policy = precision_policy(precision, device)
        torch.manual_seed(0)
        model = load_trainable_model(model_dir, config, device, policy)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer = Trainer(model, codec, config, device, policy, total_steps=steps)
        synchronize(device)
        t0 = time.perf_counter()
        losses = [trainer.step(encoded, targets) for _ in range(steps)]
        synchronize(device)
        seconds = time.perf_counter() - t0
        layers = [n for n in before if n.endswith(".weight") and ("proj" in n or "norm" in n)]
        fractions = {n: (dict(model.named_parameters())[n].detach() != before[n]).float().mean().item() for n in layers}
        changed_by_policy[precision] = fractions
        if precision == "bf16-mixed":
            worst = min(fractions, key=fractions.get)
            dtypes = {str(p.dtype) for p in model.parameters()}
            ok = fractions[worst] > 0.9 and dtypes == {"torch.float32"} and all(l is not None for l in losses)
            checks.append(GpuCheck(
                "train: bf16-mixed updates kept", ok,
                f"{steps} steps in {seconds:.2f} s, losses {', '.join(f'{l:.3f}' for l in losses)}; master weights "
                f"{'/'.join(sorted(dtypes))}; every one of {len(layers)} linear/norm weights changed in at least "
                f"{fractions[worst]:.1%} of its entries (least: {worst})"))
            kept = model
        else:
            share = sum(f for f in fractions.values()) / len(fractions)
            checks.append(GpuCheck(
                "train: bf16 weights (contrast)", True,
                f"pure bf16 weights changed {share:.1%} of linear/norm entries on average, norm layers "
                f"{sum(f for n, f in fractions.items() if 'norm' in n) / max(1, sum('norm' in n for n in fractions)):.1%}"
                " (updates below bf16 resolution are lost; this is why bf16-mixed is the GPU default)"))
            del model
    # Accumulation: micro-batches of 1 give the whole batch's gradient (fp32 compute, so the
    # comparison is exact up to summation order; bf16 compute differs by its rounding).
    grads = []
    for micro_batch in (None, 1):
        config = TrainConfig(precision="fp32", batch_size=len(examples), micro_batch_size=micro_batch)
        policy = precision_policy("fp32", device)
        torch.manual_seed(0)
        model = load_trainable_model(model_dir, config, device, policy)
        Trainer(model, codec, config, device, policy, total_steps=1).accumulate_gradients(encoded, targets)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        del model
    error = ((grads[0] - grads[1]).norm() / grads[0].norm()).item()
    checks.append(GpuCheck("train: gradient accumulation", error < 1e-4,
                           f"batch {len(examples)} in one pass vs {len(examples)} micro-batches of 1 (fp32): relative "
                           f"gradient difference {error:.2e}"))
    return checks, kept


def _lora_check(model_dir: Path, device: str, work: Path) -> list[GpuCheck]:
    """LoRA with the GPU policy: frozen bf16 base, fp32 adapters that move; the merged checkpoint
    scores like the adapter model it came from."""
    import torch
    from transformers import AutoTokenizer

    from tasks.config import LoraSettings, TrainConfig
    from tasks.training import Trainer, _adapter_state, _save_merged, load_trainable_model, precision_policy
    from tasks.verifiers import ScoringSettings, load_verifier
    from tasks.verifiers.step_tag import StepTagCodec, pad_batch, tag_log_probs

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    codec = StepTagCodec(tokenizer, 512)
    examples = _examples()
    encoded = codec.encode_many([(e.question, e.steps) for e in examples])
    config = TrainConfig(precision="bf16-mixed", batch_size=len(examples), lr=1e-3, lora=LoraSettings(r=8))
    policy = precision_policy("bf16-mixed", device)
    torch.manual_seed(0)
    model = load_trainable_model(model_dir, config, device, policy)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen_dtypes = {str(p.dtype) for p in model.parameters() if not p.requires_grad}
    trainer = Trainer(model, codec, config, device, policy, total_steps=2)
    for _ in range(2):
        trainer.step(encoded, [e.targets for e in examples])
    moved = sum(bool((dict(model.named_parameters())[n].detach() != v).any()) for n, v in trainable.items()
                if "lora_B" in n)
    lora_b = sum("lora_B" in n for n in trainable)
    model.eval()
    input_ids, mask, rows, cols, _ = pad_batch(codec, encoded, [(1.0,) * len(p) for _, p in encoded], device)
    with torch.no_grad(), policy.autocast(device):
        own = tag_log_probs(model, codec, input_ids, mask, rows, cols)[0].exp().tolist()
    folder = work / "lora-verifier"
    _save_merged(model, _adapter_state(model), tokenizer, config, folder)
    merged = load_verifier(folder, ScoringSettings(device=device)).score_many([(e.question, e.steps) for e in examples])
    diff = max(abs(a - b) for a, b in zip(own, [x for s in merged for x in s.scored]))
    ok = moved == lora_b > 0 and frozen_dtypes == {"torch.bfloat16"} and diff < 0.05
    return [GpuCheck("train: LoRA adapters, merged checkpoint", ok,
                     f"{len(trainable)} fp32 adapter tensors over a frozen {'/'.join(sorted(frozen_dtypes))} base; "
                     f"{moved}/{lora_b} lora_B matrices moved in 2 steps; merged checkpoint scores within {diff:.4f} "
                     "of the adapter model")]


def _score_check(model: object, model_dir: Path, device: str, work: Path) -> list[GpuCheck]:
    from transformers import AutoTokenizer

    from tasks.config import TrainConfig
    from tasks.training import _save
    from tasks.verifiers import ScoringSettings, load_verifier

    folder = work / "verifier"
    _save(model, AutoTokenizer.from_pretrained(model_dir), TrainConfig(precision="bf16-mixed"), folder)
    items = [(QUESTION, s) for s in SOLUTIONS] * 8
    default = load_verifier(folder, ScoringSettings(device=device))  # bf16 on a GPU
    t0 = time.perf_counter()
    batched = default.score_many(items)
    seconds = time.perf_counter() - t0
    one_by_one = load_verifier(folder, ScoringSettings(device=device, batch_size=1)).score_many(items[: len(SOLUTIONS)])
    exact = load_verifier(folder, ScoringSettings(device=device, dtype="float32")).score_many(items[: len(SOLUTIONS)])
    cpu = load_verifier(folder, ScoringSettings(device="cpu")).score_many(items[: len(SOLUTIONS)])

    def largest(a, b):
        return max(abs(x - y) for s, t in zip(a, b) for x, y in zip(s.scored, t.scored))

    shapes_ok = [len(s.step_scores) for s in batched[: len(SOLUTIONS)]] == [len(s) for s in SOLUTIONS]
    return [GpuCheck(f"score: fp32 on {device} vs fp32 on CPU", shapes_ok and largest(exact, cpu) < 1e-3,
                     f"largest step-score difference {largest(exact, cpu):.2e}; {len(items)} solutions in "
                     f"{seconds:.2f} s with {default.model.dtype} weights, which differ from fp32 by up to "
                     f"{largest(batched, cpu):.4f} on this random-weight model"),
            GpuCheck("score: batch size does not change scores", largest(batched, one_by_one) < 0.02,
                     f"largest difference batch-of-many vs one at a time {largest(batched, one_by_one):.4f}")]


def _generate_check(model_dir: Path, device: str) -> list[GpuCheck]:
    from tasks.completers import HFCompleter
    from tasks.config import ModelSettings, SamplingSettings
    from tasks.models import resolve_model

    settings = ModelSettings(model=str(model_dir), backend="hf")
    completer = HFCompleter(settings, resolve_model(str(model_dir)), device=device)
    prompts = [completer.chat_prompt([{"role": "user", "content": QUESTION}])] * 2
    checks = []
    for temperature in (0.0, 0.8):
        t0 = time.perf_counter()
        groups = completer.complete(prompts, 3, SamplingSettings(temperature=temperature, max_tokens=16))
        seconds = time.perf_counter() - t0
        shape_ok = [len(g) for g in groups] == [3, 3] and all(c.num_tokens > 0 for g in groups for c in g)
        same = all(len({c.text for c in g}) == 1 for g in groups)
        ok = shape_ok and (same if temperature == 0 else True)
        checks.append(GpuCheck(f"generate: hf backend, temperature {temperature}, n 3", ok,
                               f"on {completer.device}: 2 prompts x 3 samples in {seconds:.2f} s"
                               + ("; greedy samples identical" if temperature == 0 and same else "")))
    completer.close()
    return checks


def run_gpu_check(config_dir: Path, report: Callable[[GpuCheck], None] = lambda c: None,
                  device: str = "cuda") -> list[GpuCheck]:
    """Every check, in order; an exception in a stage is a failed check naming it, and the later
    stages still run. ``device`` "cpu" runs the same code paths on the CPU (the suite's test)."""
    import torch

    where = (f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}" if device == "cuda"
             else "CPU (bf16 autocast emulated)")
    checks: list[GpuCheck] = [GpuCheck("device", True, f"{where}, torch {torch.__version__}")]
    report(checks[0])

    def stage(name: str, fn: Callable[[], list[GpuCheck]]) -> None:
        try:
            results = fn()
        except Exception as exc:  # the check reports every failure instead of stopping at the first
            results = [GpuCheck(name, False, f"{type(exc).__name__}: {exc}")]
        for c in results:
            checks.append(c)
            report(c)

    with tempfile.TemporaryDirectory(prefix="prmf-gpu-check-") as tmp:
        work = Path(tmp)
        model_dir = random_model(config_dir, work / "random-model")
        checks.append(GpuCheck("random model", True, f"{sum(p.stat().st_size for p in model_dir.glob('*.safetensors')) / 2**20:.0f} MiB "
                               f"of random weights from {config_dir}"))
        report(checks[-1])
        trained: list[object] = []

        def train() -> list[GpuCheck]:
            results, model = _train_check(model_dir, device)
            trained.append(model)
            return results

        stage("train", train)
        if trained:
            stage("score", lambda: _score_check(trained[0], model_dir, device, work))
            trained.clear()
        stage("lora", lambda: _lora_check(model_dir, device, work))
        stage("generate", lambda: _generate_check(model_dir, device))
    return checks
