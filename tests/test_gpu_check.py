"""``prmf doctor --gpu``: skipped with a one-line reason without CUDA; its code paths (random
model, bf16-mixed training, LoRA merge, scoring, hf generation) run on the CPU here on a tiny
architecture, so the check that goes to a GPU machine is known to work as code."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from tasks.gpu_check import TOKENIZER_FILES, run_gpu_check
from tasks.models import embedded_model_dir

runner = CliRunner()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the check runs instead of being skipped")
def test_doctor_gpu_is_skipped_with_one_line_reason_without_cuda():
    result = runner.invoke(app, ["doctor", "--gpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("GPU check skipped: CUDA is not available"), result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU suite runs the code paths below)")
def test_doctor_gpu_passes_on_cuda():
    result = runner.invoke(app, ["doctor", "--gpu"])
    assert result.exit_code == 0 and "GPU check passed" in result.output, result.output


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """The embedded model's tokenizer and a 2-layer, 64-wide Llama config (no weights)."""
    folder = tmp_path_factory.mktemp("tiny-config")
    source = embedded_model_dir()
    config = json.loads((source / "config.json").read_text())
    config.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16)
    (folder / "config.json").write_text(json.dumps(config))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    return folder


def test_gpu_check_code_paths_run_on_cpu(tiny_config):
    reported = []
    checks = run_gpu_check(tiny_config, reported.append, device="cpu")
    assert reported == checks
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    assert not failed, failed
    names = [c.name for c in checks]
    for expected in ("train: bf16-mixed updates kept", "train: gradient accumulation", "score: fp32 on cpu vs fp32 on CPU",
                     "train: LoRA adapters, merged checkpoint", "generate: hf backend, temperature 0.0, n 3"):
        assert expected in names, names
