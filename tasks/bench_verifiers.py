"""Verifier benchmarks: ``prmf bench score`` and ``prmf bench train``.

Each variant runs in its own process (so peak memory is that variant's), one after the other,
and the figures print side by side, baseline first. Timed assertions never go into tests.

Workload: ProcessBench solutions (real, varied lengths; gsm8k and math splits interleaved), scored
or trained on by a *random-weight* model built from a model config (the embedded model's by
default; ``--model-config`` for another architecture, e.g. a 1.5B on a GPU). Random weights make
no difference to speed. Training targets come from the ProcessBench labels: steps before the
earliest error are good, that step bad, later steps carry no loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Scoring: the old path (input order, a fixed count per forward pass) against length-sorted,
# token-budgeted batches.
SCORE_VARIANTS: dict[str, dict] = {
    "count-8": {"batch_size": 8, "batch_tokens": 10**9, "length_sorted": False},
    "count-32": {"batch_size": 32, "batch_tokens": 10**9, "length_sorted": False},
    "sorted-8": {"batch_size": 8, "batch_tokens": 10**9, "length_sorted": True},
    "tokens-16k": {"batch_size": 64, "batch_tokens": 16384, "length_sorted": True},  # the default
    "tokens-32k": {"batch_size": 128, "batch_tokens": 32768, "length_sorted": True},
}
# Training: batch order and precision.
TRAIN_VARIANTS: dict[str, dict] = {
    "shuffled": {"length_grouping": False},
    "grouped": {"length_grouping": True},  # the default
    "fp32": {"precision": "fp32"},
    "bf16-mixed": {"precision": "bf16-mixed"},
    "bf16": {"precision": "bf16"},
    "micro-2": {"micro_batch_size": 2},
    "checkpointing": {"gradient_checkpointing": True},
}


@dataclass(frozen=True)
class VerifierBenchResult:
    variant: str
    device: str
    solutions: int
    tokens: int  # real (unpadded) tokens
    padded_tokens: int
    seconds: float
    peak_memory_gib: float  # GPU: max allocated; CPU: the process's peak RSS

    @property
    def solutions_per_s(self) -> float:
        return self.solutions / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def workload(samples: int) -> list[tuple[str, tuple[str, ...], int]]:
    """(question, steps, earliest error) of ``samples`` ProcessBench solutions, splits interleaved."""
    from tasks.processbench import load_processbench

    splits = [load_processbench("gsm8k"), load_processbench("math")]
    mixed = [s for pair in zip(*splits) for s in pair][:samples]
    if len(mixed) < samples:
        raise ValueError(f"at most {len(mixed)} samples in the workload, asked for {samples}")
    return [(s.question, s.steps, s.label) for s in mixed]


def _peak_memory_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@contextlib.contextmanager
def _timed(device: str):
    """Wall-clock seconds of the block (GPU work included), with the peak-memory counter reset at
    its start; yields a function that returns the seconds once the block has ended."""
    import torch

    from tasks.gpu_check import synchronize

    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = [time.perf_counter()]
    yield lambda: times[1] - times[0]
    synchronize(device)
    times.append(time.perf_counter())


def _verifier_folder(config_dir: Path, out: Path, dtype: str) -> Path:
    from tasks.gpu_check import random_model
    from tasks.verifiers import VERIFIER_METADATA

    random_model(config_dir, out, dtype)
    (out / VERIFIER_METADATA).write_text(json.dumps({"kind": "prm", "max_length": 4096, "target": "he"}))
    return out


def run_score_variant(variant: str, folder: Path, samples: int) -> VerifierBenchResult:
    from tasks.verifiers import ScoringSettings, load_verifier
    from tasks.verifiers.step_tag import default_device

    device = default_device()
    items = [(q, steps) for q, steps, _ in workload(samples)]
    verifier = load_verifier(folder, ScoringSettings(**SCORE_VARIANTS[variant]))
    verifier.score_many(items[:8])  # warm-up: kernels, allocator
    shapes: list[int] = []  # padded tokens of each forward pass
    body = verifier.model.base_model
    hook = body.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(kw["input_ids"].numel()), with_kwargs=True)
    with _timed(device) as elapsed:
        verifier.score_many(items)
    seconds = elapsed()
    hook.remove()
    tokens = sum(len(ids) for ids, *_ in verifier.codec.encode_tail_many(items))
    return VerifierBenchResult(variant, device, len(items), tokens, sum(shapes), seconds, _peak_memory_gib(device))


def run_train_variant(variant: str, folder: Path, samples: int, batch_size: int) -> VerifierBenchResult:
    from transformers import AutoTokenizer

    from tasks.config import TrainConfig
    from tasks.training import Example, Trainer, length_grouped_batches, load_trainable_model, precision_policy
    from tasks.verifiers.step_tag import StepTagCodec, default_device

    device = default_device()
    examples = [Example(str(i), q, steps, tuple(1.0 if label == -1 or j < label else 0.0 if j == label else None
                                                for j in range(len(steps))))
                for i, (q, steps, label) in enumerate(workload(samples))]
    config = TrainConfig(batch_size=batch_size, max_length=1024, **TRAIN_VARIANTS[variant])
    policy = precision_policy(config.precision, device)
    model = load_trainable_model(folder, config, device, policy)
    codec = StepTagCodec(AutoTokenizer.from_pretrained(folder), config.max_length)
    encoded = codec.encode_many([(e.question, e.steps) for e in examples])
    batches = length_grouped_batches([len(ids) for ids, _ in encoded], batch_size, random.Random(0),
                                     config.length_grouping)
    trainer = Trainer(model, codec, config, device, policy, total_steps=len(batches) + 1)
    trainer.step([encoded[i] for i in batches[0]], [examples[i].targets for i in batches[0]])  # warm-up
    with _timed(device) as elapsed:
        for batch in batches:
            trainer.step([encoded[i] for i in batch], [examples[i].targets for i in batch])
    seconds = elapsed()
    tokens = sum(len(ids) for ids, _ in encoded)
    padded = sum(len(batch) * max(len(encoded[i][0]) for i in batch) for batch in batches)
    return VerifierBenchResult(variant, device, len(examples), tokens, padded, seconds, _peak_memory_gib(device))


def compare(kind: str, variants: list[str], config_dir: Path, samples: int, batch_size: int = 8
            ) -> list[VerifierBenchResult]:
    known = SCORE_VARIANTS if kind == "score" else TRAIN_VARIANTS
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise ValueError(f"unknown {kind} variant {unknown[0]!r}; known: {', '.join(known)}")
    import torch

    results = []
    with tempfile.TemporaryDirectory(prefix="prmf-bench-") as tmp:  # one random model for every variant
        folder = _verifier_folder(config_dir, Path(tmp) / "verifier",
                                  "bfloat16" if torch.cuda.is_available() else "float32")
        for variant in variants:
            cmd = [sys.executable, "-m", "tasks.bench_verifiers", kind, variant, str(folder), str(samples),
                   str(batch_size)]
            out = subprocess.run(cmd, env={**os.environ, "TOKENIZERS_PARALLELISM": "true"}, capture_output=True,
                                 text=True)
            if out.returncode != 0:
                raise RuntimeError(f"bench {kind} variant {variant} failed:\n{out.stderr[-3000:]}")
            results.append(VerifierBenchResult(**json.loads(out.stdout.strip().splitlines()[-1])))
    return results


if __name__ == "__main__":
    kind, variant, folder, samples, batch_size = sys.argv[1], sys.argv[2], Path(sys.argv[3]), *map(int, sys.argv[4:6])
    if kind == "score":
        result = run_score_variant(variant, folder, samples)
    else:
        result = run_train_variant(variant, folder, samples, batch_size)
    print(json.dumps(asdict(result)))
