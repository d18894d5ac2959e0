"""Model resolution and the embedded model's GGUF -> safetensors conversion (real files)."""

from __future__ import annotations

import json

import pytest

from tasks.models import EMBEDDED_MODEL, ModelError, prepare_embedded_model, resolve_model


def test_conversion_produces_a_loadable_model(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("PRMF_CACHE", str(tmp_path))
    path = prepare_embedded_model()
    assert path.parent.parent == tmp_path
    assert json.loads((path / "prmf_source.json").read_text())["dtype"] == "bfloat16"
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    mtime = (path / "model.safetensors").stat().st_mtime
    assert prepare_embedded_model() == path  # cached: no second conversion
    assert (path / "model.safetensors").stat().st_mtime == mtime
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".convert-")]  # no temp left behind

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                           add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape[-1] >= len(tokenizer) - 64 and torch.isfinite(logits.float()).all()


def test_resolution_of_each_kind_of_setting(tmp_path):
    embedded = resolve_model(EMBEDDED_MODEL)
    assert (embedded.path and embedded.identity.startswith(EMBEDDED_MODEL))
    local = resolve_model(embedded.path)
    assert local.path == embedded.path and local.identity == embedded.path
    hub = resolve_model("Qwen/Qwen2.5-Math-7B-Instruct")
    assert hub.path == hub.identity == "Qwen/Qwen2.5-Math-7B-Instruct"


def test_bad_settings_say_what_is_wrong(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelError, match="neither"):
        resolve_model("not a model")
