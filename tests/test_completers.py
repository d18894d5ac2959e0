"""The three completer backends on the real embedded model."""

from __future__ import annotations

import pytest

from flows.label import label
from tasks.completers import HFCompleter, OpenAICompleter
from tasks.config import LabelConfig, ModelSettings, SamplingSettings
from tasks.models import EMBEDDED_MODEL, resolve_model
from tasks.steps import build_messages
from tasks.store import Store
from tests.helpers import VLLMServer

SHORT = SamplingSettings(temperature=0.7, max_tokens=12)


def _check(groups, prompts, n, max_tokens):
    assert len(groups) == len(prompts)
    for group in groups:
        assert len(group) == n
        for c in group:
            assert isinstance(c.text, str) and 0 < c.num_tokens <= max_tokens + 1


@pytest.mark.engine
def test_vllm_rollouts_continue_the_assistant_turn(engine):
    prefix = "2 + 3 = 5\n"
    prompt = engine.chat_prompt(build_messages("Tom has 2 apples and buys 3. Then 1 more.", "numeric"), prefix)
    assert prompt.endswith("<|im_start|>assistant\n" + prefix)  # the prefix is the model's own turn
    groups = engine.complete([prompt, prompt + "5 + 1 = 6\n"], 3, SHORT)
    _check(groups, [0, 1], 3, SHORT.max_tokens)


def test_hf_backend_samples_n_per_prompt():
    settings = ModelSettings(backend="hf")
    completer = HFCompleter(settings, resolve_model(EMBEDDED_MODEL))
    prompts = [completer.chat_prompt(build_messages(q, "numeric")) for q in ("What is 1 + 1?", "What is 2 + 5?")]
    groups = completer.complete(prompts, 2, SHORT)
    _check(groups, prompts, 2, SHORT.max_tokens)
    assert all(c.finish_reason in ("stop", "length") for g in groups for c in g)


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A real OpenAI-compatible vLLM server on 127.0.0.1."""
    server = VLLMServer(log_path=tmp_path_factory.mktemp("server") / "vllm.log").start()
    try:
        yield server.url, server.model
    finally:
        server.kill()


@pytest.mark.engine
def test_openai_backend_labels_through_a_server(vllm_server, engine, prefect_harness, db_path):
    url, model = vllm_server
    settings = ModelSettings(backend="openai", base_urls=(url, url + "/"), served_model_name=model)
    completer = OpenAICompleter(settings, resolve_model(EMBEDDED_MODEL))
    prompts = [completer.chat_prompt(build_messages("What is 4 + 4?", "numeric"), "4 + 4 = 8\n")] * 3
    _check(completer.complete(prompts, 2, SHORT), prompts, 2, SHORT.max_tokens)

    # Generator in-process, completer over HTTP: the flow does not care which backend serves.
    config = LabelConfig(
        db=db_path, dataset={"name": "arith", "limit": 2}, solutions=2, rollouts=3,
        generation={"temperature": 0.7, "max_tokens": 64}, rollout={"temperature": 0.7, "max_tokens": 32},
        completer={"backend": "openai", "base_urls": [url], "served_model_name": model},
    )
    label(config=config)
    with Store(db_path, read_only=True) as store:
        assert store.scalar("SELECT backend FROM runs") == "openai"
        counts = store.query("SELECT unit_id, count(*) FROM rollouts GROUP BY 1").rows
        assert counts and all(n == 3 for _, n in counts)
        prefixes = store.scalar("SELECT count(*) FROM steps st JOIN solutions s USING (solution_id) "
                                "WHERE st.step_index < s.num_steps")
        assert store.scalar("SELECT count(*) FROM step_estimates WHERE NOT from_final_answer") == prefixes


def test_engine_dtype_auto_avoids_bf16_on_cpus_without_avx512():
    from tasks.completers import engine_dtype

    avx2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx f16c avx2 fma\n"  # this project's 2-core EPYC (2026-11-26)
    avx512 = "processor\t: 0\nflags\t\t: fpu sse avx avx2 avx512f avx512bw avx512_bf16\n"
    assert engine_dtype("auto", on_cpu=True, cpuinfo=avx2) == "float32"
    assert engine_dtype("auto", on_cpu=True, cpuinfo=avx512) == "bfloat16"
    assert engine_dtype("auto", on_cpu=False, cpuinfo=avx2) == "bfloat16"  # GPUs: bf16 as before
    assert engine_dtype("bfloat16", on_cpu=True, cpuinfo=avx2) == "bfloat16"  # an explicit setting wins
    assert engine_dtype("auto", on_cpu=True, cpuinfo="flags\t: avx512fx\n") == "float32"  # whole flags only
