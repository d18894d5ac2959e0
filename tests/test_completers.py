"""The three completer backends on the real embedded model."""

from __future__ import annotations

import pytest

from pydantic import ValidationError

from flows.label import label
from tasks.completers import (
    CompleterError,
    EngineStartError,
    HFCompleter,
    OpenAICompleter,
    VLLMCompleter,
    check_cpu_parallelism,
    is_out_of_memory,
    vllm_engine_args,
)
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


# A continuation in which the next newline is near certain: the model is counting, one number a line.
COUNTING = ("Count from 1 to 10, one number per line.", "1\n2\n3\n")
GREEDY = SamplingSettings(temperature=0, max_tokens=12)


def _counting_prompt(completer) -> str:
    question, prefix = COUNTING
    return completer.chat_prompt([{"role": "user", "content": question}], prefix)


def _check_stopped_at_newline(completer):
    """Stop strings end generation before the string, which the text leaves out ("stop" finish)."""
    prompt = _counting_prompt(completer)
    [[free]] = completer.complete([prompt], 1, GREEDY)
    assert "\n" in free.text  # the premise: without a stop string the greedy text has a newline
    stop = GREEDY.model_copy(update={"stop": ("\n",)})
    [[stopped]] = completer.complete([prompt], 1, stop)
    assert stopped.text == free.text.split("\n")[0]  # greedy: the same text, cut before the stop
    assert stopped.finish_reason == "stop" and 0 < stopped.num_tokens < free.num_tokens
    sampled = completer.complete([prompt] * 2, 3, SamplingSettings(temperature=0.7, max_tokens=12, stop=("\n",)))
    _check(sampled, [0, 1], 3, 12)
    assert all("\n" not in c.text for g in sampled for c in g)


@pytest.mark.engine
def test_vllm_stop_strings_end_rollouts(engine):
    _check_stopped_at_newline(engine)


def test_repetition_rule_matches_vllms():
    from vllm.sampling_params import RepetitionDetectionParams
    from vllm.v1.core.sched.utils import check_sequence_repetition

    from tasks.completers import has_repeating_tail

    assert has_repeating_tail([9, 1, 2, 3, 1, 2, 3], 3, 3, 2)  # "1 2 3" twice at the end
    assert not has_repeating_tail([9, 1, 2, 3, 1, 2, 3, 4], 3, 3, 2)  # not at the end
    assert not has_repeating_tail([1, 2, 3, 1, 2, 3], 3, 3, 3)  # only twice
    assert has_repeating_tail([5, 5, 5], 1, 4, 3) and not has_repeating_tail([5, 5, 5], 2, 4, 2)
    # vLLM's own implementation as the oracle, on every short sequence over two tokens.
    import itertools

    for length in range(0, 11):
        for seq in itertools.product((0, 1), repeat=length):
            for lo, hi, count in ((1, 1, 2), (1, 3, 2), (2, 4, 2), (1, 2, 3), (3, 5, 2)):
                params = RepetitionDetectionParams(max_pattern_size=hi, min_pattern_size=lo, min_count=count)
                assert has_repeating_tail(seq, lo, hi, count) == check_sequence_repetition(list(seq), params), (seq, lo, hi, count)


LOOP = ("Write the word apple 40 times, separated by spaces.", "apple apple apple")


def _check_repetition_stop_ends_a_loop(completer):
    from tasks.completers import has_repeating_tail
    from tasks.config import RepetitionStop

    prompt = completer.chat_prompt([{"role": "user", "content": LOOP[0]}], LOOP[1])
    free_sampling = SamplingSettings(temperature=0, max_tokens=40)
    [[free]] = completer.complete([prompt], 1, free_sampling)
    assert free.num_tokens == 40  # the premise: greedy, the model loops to max_tokens
    rule = RepetitionStop(min_tokens=2, max_tokens=4, count=3)
    [[stopped]] = completer.complete([prompt], 1, free_sampling.model_copy(update={"repetition_stop": rule}))
    assert stopped.num_tokens < free.num_tokens and free.text.startswith(stopped.text.rstrip())
    ids = completer.tokenizer(stopped.text, add_special_tokens=False)["input_ids"]
    assert has_repeating_tail(ids, 1, 4, 3)  # it ended on the loop (re-tokenized: a span of up to 4)


@pytest.mark.engine
def test_vllm_repetition_stop_ends_a_loop(engine):
    _check_repetition_stop_ends_a_loop(engine)


def _check_seeded_requests_are_batch_invariant(completer):
    """A seeded prompt draws the same continuations alone, in a batch, and in another order; the
    n of one prompt still differ, and another seed draws others."""
    from tasks.completers import request_seeds

    sampling = SamplingSettings(temperature=1.0, max_tokens=16)
    prompts = [completer.chat_prompt(build_messages(f"What is {a} + {b}? Explain.", "numeric"))
               for a, b in ((12, 30), (7, 8), (41, 2))]
    seeds = request_seeds(sampling, ["a", "b", "c"])
    batch = completer.complete(prompts, 3, sampling, seeds)
    alone = completer.complete(prompts[2:3], 3, sampling, seeds[2:3])
    backwards = completer.complete(prompts[::-1], 3, sampling, seeds[::-1])[::-1]
    texts = [[c.text for c in g] for g in batch]
    assert [[c.text for c in g] for g in alone] == texts[2:3]
    assert [[c.text for c in g] for g in backwards] == texts
    assert all(len(set(g)) > 1 for g in texts)
    other = completer.complete(prompts, 3, sampling, request_seeds(sampling.model_copy(update={"seed": 1}),
                                                                    ["a", "b", "c"]))
    assert [[c.text for c in g] for g in other] != texts


@pytest.mark.engine
def test_vllm_seeded_requests_are_batch_invariant(engine):
    _check_seeded_requests_are_batch_invariant(engine)


def test_seeded_requests_on_a_chunked_prefill_cpu_engine_are_refused_before_they_crash_it():
    completer = VLLMCompleter.__new__(VLLMCompleter)  # only the check, no engine
    completer.seeds_crash = True
    with pytest.raises(CompleterError, match="needs chunked_prefill off"):
        completer.complete(["x"], 1, SHORT, [1])


def test_an_engine_that_fails_to_start_is_not_an_out_of_memory_to_halve():
    # vLLM's start errors often say "out of memory" (weights or KV cache do not fit); halving the
    # batch cannot help, so complete_adaptive must not retry it per half.
    assert is_out_of_memory(CompleterError("CUDA out of memory"))
    assert not is_out_of_memory(EngineStartError("vLLM engine failed to start: CUDA out of memory"))


def test_a_vllm_completer_starts_its_engine_only_when_asked_to_complete():
    # A rerun with nothing pending builds its completers but never completes: it must not pay
    # for an engine (or leave engine processes behind).
    settings = ModelSettings()
    completer = VLLMCompleter(settings, resolve_model(settings.model))
    assert completer.chat_prompt([{"role": "user", "content": "1 + 1?"}]).endswith("assistant\n")
    assert completer._llm is None
    completer.close()


@pytest.fixture(scope="module")
def hf_completer():
    return HFCompleter(ModelSettings(backend="hf"), resolve_model(EMBEDDED_MODEL))


def test_hf_backend_samples_n_per_prompt(hf_completer):
    completer = hf_completer
    prompts = [completer.chat_prompt(build_messages(q, "numeric")) for q in ("What is 1 + 1?", "What is 2 + 5?")]
    groups = completer.complete(prompts, 2, SHORT)
    _check(groups, prompts, 2, SHORT.max_tokens)
    assert all(c.finish_reason in ("stop", "length") for g in groups for c in g)


def test_hf_backend_repetition_stop_ends_a_loop(hf_completer):
    _check_repetition_stop_ends_a_loop(hf_completer)


def test_hf_backend_seeded_requests_are_batch_invariant(hf_completer):
    _check_seeded_requests_are_batch_invariant(hf_completer)


def test_hf_backend_greedy_returns_n_identical_samples(hf_completer):
    # transformers refuses greedy decoding with num_return_sequences > 1; greedy is deterministic,
    # so n identical samples are the right answer.
    prompts = [hf_completer.chat_prompt(build_messages(q, "numeric")) for q in ("What is 1 + 1?", "What is 2 + 5?")]
    groups = hf_completer.complete(prompts, 3, SamplingSettings(temperature=0, max_tokens=6))
    _check(groups, prompts, 3, 6)
    assert all(len(set(group)) == 1 for group in groups)
    assert groups[0][0] != groups[1][0]  # each prompt its own greedy text


def test_hf_backend_stop_strings(hf_completer):
    _check_stopped_at_newline(hf_completer)


def test_vllm_engine_args_pass_parallelism_and_batching_through():
    from vllm.engine.arg_utils import EngineArgs

    # A 72B completer on one 8-GPU node (a hub id resolves to itself: nothing is downloaded).
    settings = ModelSettings(model="Qwen/Qwen2.5-72B-Instruct", tensor_parallel_size=8, pipeline_parallel_size=2,
                             max_num_seqs=64, max_num_batched_tokens=8192)
    args = vllm_engine_args(settings, resolve_model(settings.model), on_cpu=False)
    assert args["model"] == "Qwen/Qwen2.5-72B-Instruct"
    assert (args["tensor_parallel_size"], args["pipeline_parallel_size"]) == (8, 2)
    assert (args["max_num_seqs"], args["max_num_batched_tokens"]) == (64, 8192)
    assert args["gpu_memory_utilization"] == 0.85 and args["enforce_eager"] is False
    engine_args = EngineArgs(**args)  # vLLM's own argument dataclass takes every key (no engine starts)
    assert (engine_args.tensor_parallel_size, engine_args.pipeline_parallel_size) == (8, 2)
    assert (engine_args.max_num_seqs, engine_args.max_num_batched_tokens) == (64, 8192)

    # The CPU defaults as before: 2 GiB KV cache, eager, vLLM's own batching limits.
    cpu = vllm_engine_args(ModelSettings(), resolve_model(EMBEDDED_MODEL), on_cpu=True)
    assert cpu["kv_cache_memory_bytes"] == 2 * 2**30 and cpu["enforce_eager"] is True
    assert cpu["tensor_parallel_size"] == cpu["pipeline_parallel_size"] == 1
    assert "gpu_memory_utilization" not in cpu and "max_num_seqs" not in cpu and "max_num_batched_tokens" not in cpu
    # Chunked prefill off on CPU (seeded requests crash with it), vLLM's default on GPU, unless set.
    assert cpu["enable_chunked_prefill"] is False and "enable_chunked_prefill" not in args
    assert vllm_engine_args(ModelSettings(chunked_prefill=True), resolve_model(EMBEDDED_MODEL),
                            on_cpu=True)["enable_chunked_prefill"] is True
    EngineArgs(**cpu)


def test_cpu_parallelism_needs_a_place_for_each_worker():
    # vLLM-CPU binds one worker per NUMA node unless VLLM_CPU_OMP_THREADS_BIND lists cores per worker.
    tp2 = ModelSettings(tensor_parallel_size=2)
    check_cpu_parallelism(ModelSettings(), 1, {})
    check_cpu_parallelism(tp2, 2, {})
    check_cpu_parallelism(tp2, 1, {"VLLM_CPU_OMP_THREADS_BIND": "0|1"})
    with pytest.raises(CompleterError, match="2 vLLM-CPU workers.*own NUMA node and this machine has 1"):
        check_cpu_parallelism(tp2, 1, {})
    with pytest.raises(CompleterError, match="gives 1 core list"):
        check_cpu_parallelism(ModelSettings(pipeline_parallel_size=2), 2, {"VLLM_CPU_OMP_THREADS_BIND": "0-1"})
    # Eager pipeline stages crash vLLM-CPU at the first step: a pipeline compiles unless told not to.
    pp2 = ModelSettings(pipeline_parallel_size=2)
    check_cpu_parallelism(pp2, 2, {})
    assert vllm_engine_args(pp2, resolve_model(EMBEDDED_MODEL), on_cpu=True)["enforce_eager"] is False
    with pytest.raises(CompleterError, match="needs enforce_eager false"):
        check_cpu_parallelism(ModelSettings(pipeline_parallel_size=2, enforce_eager=True), 2, {})


def test_vllm_cpu_engine_refuses_more_workers_than_numa_nodes(monkeypatch):
    from vllm.platforms import current_platform

    from tasks.completers import _visible_numa_nodes

    if not current_platform.is_cpu():
        pytest.skip("a GPU build would start a real engine here")
    nodes = _visible_numa_nodes()
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.delenv("VLLM_CPU_SIM_MULTI_NUMA", raising=False)
    settings = ModelSettings(tensor_parallel_size=nodes + 1)
    # Refused before any engine process starts, with the reason instead of a worker's assertion.
    with pytest.raises(CompleterError, match=f"this machine has {nodes}"):
        VLLMCompleter(settings, resolve_model(EMBEDDED_MODEL))


def test_engine_settings_are_refused_for_backends_that_ignore_them():
    with pytest.raises(ValidationError, match="backend 'hf' cannot set tensor_parallel_size: .*one device"):
        ModelSettings(backend="hf", tensor_parallel_size=2)
    with pytest.raises(ValidationError, match="backend 'openai' cannot set tensor_parallel_size, max_num_seqs: "
                                              "they are the server's own settings"):
        ModelSettings(backend="openai", base_urls=("http://127.0.0.1:8000",), tensor_parallel_size=8, max_num_seqs=8)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ModelSettings(tensor_parallel_size=0)
    ModelSettings(backend="hf", tensor_parallel_size=1, pipeline_parallel_size=1)  # the defaults are fine


def test_sampling_key_changes_only_with_stop_strings():
    # Work-unit keys of stores labelled before stop strings existed stay valid.
    assert SamplingSettings(temperature=0.7, max_tokens=128).key() == \
        '{"max_tokens": 128, "temperature": 0.7, "top_p": 1.0}'
    stopped = SamplingSettings(temperature=0.7, max_tokens=128, stop=["Question:"])
    assert stopped.stop == ("Question:",) and '"stop": ["Question:"]' in stopped.key()
    with pytest.raises(ValidationError, match="empty stop string"):
        SamplingSettings(stop=("",))


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
    _check_stopped_at_newline(completer)  # stop strings reach the server

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


def test_engine_dtype_auto_avoids_bf16_on_cpus_without_native_bf16():
    from tasks.completers import engine_dtype

    avx2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx f16c avx2 fma\n"  # this project's 2-core EPYC (2026-11-26)
    # The 2-core Xeon of 2026-11-27: AVX-512 but no AVX512-BF16 (bf16 3.4x slower than fp32 there).
    avx512_only = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_vbmi2\n"
    avx512_bf16 = "processor\t: 0\nflags\t\t: fpu sse avx avx2 avx512f avx512bw avx512_bf16\n"
    amx = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
    assert engine_dtype("auto", on_cpu=True, cpuinfo=avx2) == "float32"
    assert engine_dtype("auto", on_cpu=True, cpuinfo=avx512_only) == "float32"
    assert engine_dtype("auto", on_cpu=True, cpuinfo=avx512_bf16) == "bfloat16"
    assert engine_dtype("auto", on_cpu=True, cpuinfo=amx) == "bfloat16"
    assert engine_dtype("auto", on_cpu=False, cpuinfo=avx2) == "bfloat16"  # GPUs: bf16 as before
    assert engine_dtype("bfloat16", on_cpu=True, cpuinfo=avx2) == "bfloat16"  # an explicit setting wins
    assert engine_dtype("auto", on_cpu=True, cpuinfo="flags\t: avx512_bf16x\n") == "float32"  # whole flags only
