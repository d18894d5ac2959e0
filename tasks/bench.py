"""Engine benchmark: the same Math-Shepherd-shaped workload under several engine settings.

``prmf bench engine`` runs each variant in its own process (engine settings such as the CPU
thread layout are fixed at engine start) one after the other and prints the figures side by
side, baseline first. Timed assertions never go into tests; this is where speed is checked.

Workload: ``problems`` arith problems, each rolled out from the prefix of its first reference
step (few-shot prompt + question + one step), ``n`` samples of at most ``max_tokens`` tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

VARIANTS: dict[str, dict] = {
    # vLLM-CPU's own defaults: one core reserved for the scheduler, torch.compile on.
    "vllm-defaults": {"settings": {"enforce_eager": False}, "env": {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}},
    # Every core computes; the scheduler shares them.
    "no-reserved-core": {"settings": {"enforce_eager": False}, "env": {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}},
    # Skip torch.compile: faster start, maybe slower decode.
    "eager": {"settings": {"enforce_eager": True}, "env": {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}},
    # What prmf uses on CPU (ModelSettings defaults): both of the above, dtype auto.
    "prmf-default": {"settings": {}, "env": {}},
    # The weights' dtype, forced: dtype auto picks fp32 on a CPU without native bf16 (AVX512-BF16, AMX), bf16 otherwise.
    "bf16": {"settings": {"dtype": "bfloat16"}, "env": {}},
    "fp32": {"settings": {"dtype": "float32"}, "env": {}},
    # prmf-default with a seed per request, as the factory samples (SamplingSettings.seed): what
    # per-request generators cost the sampler.
    "seeded": {"settings": {}, "env": {}, "seeded": True},
    # vLLM's chunked prefill, off by default on CPU (seeded requests crash with it).
    "chunked-prefill": {"settings": {"chunked_prefill": True}, "env": {}},
}


@dataclass(frozen=True)
class BenchResult:
    variant: str
    engine_start_s: float
    generate_s: float
    prefixes: int
    rollouts: int
    tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.generate_s

    @property
    def prefixes_per_s(self) -> float:
        return self.prefixes / self.generate_s


def run_variant(variant: str, problems: int, n: int, max_tokens: int) -> BenchResult:
    """Run one variant in this process (called in a fresh subprocess by :func:`compare`)."""
    from tasks.arith import generate_problem, reference_solution
    from tasks.completers import VLLMCompleter, request_seeds
    from tasks.config import ModelSettings, SamplingSettings
    from tasks.models import EMBEDDED_MODEL, resolve_model
    from tasks.steps import build_messages, prefix_text

    spec = VARIANTS[variant]
    settings = ModelSettings(**spec["settings"])
    t0 = time.perf_counter()
    completer = VLLMCompleter(settings, resolve_model(EMBEDDED_MODEL))
    started = time.perf_counter() - t0
    prompts = []
    for i in range(problems):
        p = generate_problem(10_000 + i)  # an index range no demo or test uses
        prompts.append(completer.chat_prompt(build_messages(p.question, "numeric"), prefix_text(reference_solution(p), 1)))
    completer.complete(prompts[:2], 1, SamplingSettings(temperature=0.7, max_tokens=8))  # warm-up
    t1 = time.perf_counter()
    sampling = SamplingSettings(temperature=0.7, max_tokens=max_tokens)
    seeds = request_seeds(sampling, [str(i) for i in range(len(prompts))]) if spec.get("seeded") else None
    groups = completer.complete(prompts, n, sampling, seeds)
    generate = time.perf_counter() - t1
    completer.close()
    tokens = sum(c.num_tokens for g in groups for c in g)
    return BenchResult(variant, started, generate, len(prompts), len(prompts) * n, tokens)


def compare(variants: list[str], problems: int, n: int, max_tokens: int) -> list[BenchResult]:
    results = []
    for variant in variants:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        env = {**os.environ, **VARIANTS[variant]["env"], "VLLM_LOGGING_LEVEL": "ERROR"}
        cmd = [sys.executable, "-m", "tasks.bench", variant, str(problems), str(n), str(max_tokens)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"bench variant {variant} failed:\n{out.stderr[-3000:]}")
        results.append(BenchResult(**json.loads(out.stdout.strip().splitlines()[-1])))
    return results


if __name__ == "__main__":
    variant, problems, n, max_tokens = sys.argv[1], *map(int, sys.argv[2:5])
    print(json.dumps(asdict(run_variant(variant, problems, n, max_tokens))))
