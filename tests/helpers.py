"""Hand-built store contents for SQL-level tests (views, doctor checks)."""

from __future__ import annotations

from tasks.store import Store


def seed_store(store: Store, rollouts_correct: dict[int, list[bool]], solution_correct: bool, gold: list[bool | None]):
    """One problem, one 3-step solution, rollouts for prefixes 1 and 2."""
    store.insert_rows("problems", [{"problem_id": "p1", "dataset": "arith", "split": "train", "source": "t",
                                    "source_row": 1, "question": "q", "gold_answer": "6", "answer_kind": "numeric",
                                    "meta": "{}"}])
    store.insert_rows("generations", [{"generation_id": "g1", "problem_id": "p1", "generator_model": "m",
                                       "params": "{}", "n": 1, "num_tokens": 10, "run_id": "r"}])
    store.insert_rows("solutions", [{"solution_id": "s1", "problem_id": "p1", "generation_id": "g1",
                                     "generator_model": "m", "text": "a\nb\nc", "final_answer": "6",
                                     "correct": solution_correct, "grade_status": "ok", "num_tokens": 10,
                                     "num_steps": 3, "run_id": "r"}])
    store.insert_rows("steps", [{"solution_id": "s1", "step_index": i + 1, "text": t, "prefix_hash": f"h{i + 1}",
                                 "gold": g} for i, (t, g) in enumerate(zip("abc", gold))])
    for step, outcomes in rollouts_correct.items():
        unit = f"u{step}"
        store.insert_rows("work_units", [{"unit_id": unit, "problem_id": "p1", "prefix_hash": f"h{step}",
                                          "completer_model": "m", "params": "{}", "strategy": "math_shepherd",
                                          "budget": len(outcomes), "n": len(outcomes), "k": sum(map(bool, outcomes)), "round": 0,
                                          "solution_id": "s1", "step_index": step, "run_id": "r"}])
        store.insert_rows("rollouts", [{"rollout_id": f"{unit}:{i}", "unit_id": unit, "sample_index": i,
                                        "solution_id": "s1", "step_index": step, "text": "x", "answer": None,
                                        "correct": c, "grade_status": "ok", "num_tokens": 3, "run_id": "r"}
                                       for i, c in enumerate(outcomes)])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """A real OpenAI-compatible vLLM server on 127.0.0.1 serving the embedded model.

    The CPU build has no `vllm serve` console script, so it runs the api_server module. Its own
    process group, so stop/kill take its engine processes down with it.
    """

    def __init__(self, port: int | None = None, api_key: str | None = None, log_path=None):
        from tasks.models import EMBEDDED_MODEL, resolve_model

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = resolve_model(EMBEDDED_MODEL).path
        self.api_key = api_key
        self.log_path = log_path
        self.proc = None

    def start(self, timeout_s: float = 400) -> "VLLMServer":
        import os
        import subprocess
        import sys
        import time

        import httpx

        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
               "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                   "--host", "127.0.0.1", "--port", str(self.port), "--enable-prefix-caching",
                   "--max-model-len", "2048", "--seed", "0", "--enforce-eager"]
        if self.api_key:
            command += ["--api-key", self.api_key]
        log = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = open(self.log_path).read()[-2000:] if self.log_path else ""
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}: {tail}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.kill()
        raise RuntimeError(f"vLLM server did not become healthy in {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL the server and its engine processes (a crash, not a shutdown)."""
        import os
        import signal

        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None


def seed_labelled_arith(store: Store, problems: int, rollouts: int = 4, split: str = "train", start: int = 0) -> None:
    """Arith problems with two solutions each, labelled the Math-Shepherd way by construction.

    One solution computes every step right; the other slips on its first step, and every rollout
    from its prefixes fails. The labels are what a perfect completer would produce, so a reward
    model trained on them has a real signal to learn: is the arithmetic in this step right?
    """
    from tasks.datasets import load_arith
    from tasks.store import content_key

    loaded = load_arith(problems, split=split, start=start).problems
    store.insert_rows("problems", [{"problem_id": p.problem_id, "dataset": p.dataset, "split": p.split,
                                    "source": p.source, "source_row": p.source_row, "question": p.question,
                                    "gold_answer": p.gold_answer, "answer_kind": p.answer_kind, "meta": "{}"}
                                   for p in loaded])
    for p in loaded:
        first = int(p.meta["given_numbers"][0])
        values = p.meta["gold_values"]
        ops = p.meta["operations"]
        right, wrong, previous, slipped = [], [], first, first + 1 + ops[0][1]
        for (op, x), value in zip(ops, values):
            right.append(f"{previous} {op} {x} = {value}")
            previous = value
        wrong.append(f"{first} {ops[0][0]} {ops[0][1]} = {slipped}")
        for op, x in ops[1:]:
            after = slipped + x if op == "+" else slipped - x
            wrong.append(f"{slipped} {op} {x} = {after}")
            slipped = after
        for name, steps, correct in (("right", right, True), ("wrong", wrong, False)):
            steps = steps + [f"The answer is {values[-1] if correct else slipped}."]
            generation = content_key(p.problem_id, name)
            solution = content_key(p.problem_id, name, "s")
            store.insert_rows("generations", [{"generation_id": generation, "problem_id": p.problem_id,
                                               "generator_model": "seed", "params": "{}", "n": 1, "num_tokens": 1,
                                               "run_id": "seed"}])
            store.insert_rows("solutions", [{"solution_id": solution, "problem_id": p.problem_id,
                                             "generation_id": generation, "generator_model": "seed",
                                             "text": "\n".join(steps), "final_answer": None, "correct": correct,
                                             "grade_status": "ok", "num_tokens": 1, "num_steps": len(steps),
                                             "run_id": "seed"}])
            store.insert_rows("steps", [{"solution_id": solution, "step_index": i + 1, "text": t,
                                         "prefix_hash": content_key(solution, i + 1), "gold": correct}
                                        for i, t in enumerate(steps)])
            for i in range(1, len(steps)):
                unit = content_key(solution, i, "unit")
                store.insert_rows("work_units", [{"unit_id": unit, "problem_id": p.problem_id,
                                                  "prefix_hash": content_key(solution, i), "completer_model": "seed",
                                                  "params": "{}", "strategy": "math_shepherd", "budget": rollouts, "n": rollouts,
                                                  "k": sum(correct and j % 2 == 0 for j in range(rollouts)), "round": 0,
                                                  "solution_id": solution, "step_index": i, "run_id": "seed"}])
                store.insert_rows("rollouts", [{"rollout_id": f"{unit}:{j}", "unit_id": unit, "sample_index": j,
                                                "solution_id": solution, "step_index": i, "text": "x",
                                                "answer": None, "correct": correct and j % 2 == 0,
                                                "grade_status": "ok", "num_tokens": 1, "run_id": "seed"}
                                               for j in range(rollouts)])


def replay_strategy(store: Store, strategy_name: str, budget: int) -> set[tuple[str, str, str, int]]:
    """Replay a labelling strategy against the stored rollouts, solution by solution: ask it for
    its requests, answer each from the stored units (which must exist), until it is done. Returns
    the units an uninterrupted run that drew these rollouts would have stored, as (problem,
    prefix_hash, evaluation, round): a run that was killed and rerun must have stored exactly these."""
    from tasks.labelling.labeller import ROOT_PREFIX_HASH, evaluation_name
    from tasks.labelling.strategies import ROOT, SolutionState, parse_strategy, strategy

    chosen = strategy(strategy_name, budget)
    filtered = set()
    if "filter" in parse_strategy(strategy_name)[1]:
        filtered = {p for p, in store.query("SELECT problem_id FROM solutions WHERE generator_model NOT LIKE 'rollouts:%' "
                                            "GROUP BY 1 HAVING bool_and(correct) OR NOT bool_or(correct)").rows}
    measured = {(p, h, e, r): (n, k) for p, h, e, r, n, k in store.query(
        "SELECT u.problem_id, u.prefix_hash, u.strategy, u.round, count(*), count(*) FILTER (WHERE r.correct) "
        "FROM work_units u JOIN rollouts r USING (unit_id) GROUP BY ALL").rows}
    requested = set()
    reused_from = dict(store.query("SELECT solution_id, any_value(parent_step) FROM reused_rollouts GROUP BY 1").rows)
    for sid, problem, steps, correct in store.query("SELECT solution_id, problem_id, num_steps, correct FROM solutions").rows:
        hashes = dict(store.query("SELECT step_index, prefix_hash FROM steps WHERE solution_id = ?", [sid]).rows)
        state = SolutionState(steps, correct)
        if reused_from.get(sid):  # a reused rollout searches after its parent prefix, settled before it
            parent = (problem, hashes[reused_from[sid]], evaluation_name(strategy_name))
            state.observe(reused_from[sid], *(sum(x) for x in zip(*(
                v for (p, h, e, _), v in measured.items() if (p, h, e) == parent))))
            state.reused_from = reused_from[sid]
        while wanted := [r for r in chosen.requests(state) if problem not in filtered or r.step_index == ROOT]:
            for r in wanted:
                evaluation = "math_shepherd" if r.step_index == ROOT else evaluation_name(strategy_name)
                key = (problem, ROOT_PREFIX_HASH if r.step_index == ROOT else hashes[r.step_index], evaluation, r.round)
                assert key in measured, f"solution {sid}: the strategy asks for {r}, which is not stored"
                n, k = measured[key]
                assert n == r.n, f"solution {sid}: {r} stored with {n} rollouts"
                state.observe(r.step_index, n, k)
                requested.add(key)
    return requested


def stored_units(store: Store) -> set[tuple[str, str, str, int]]:
    return set(store.query("SELECT problem_id, prefix_hash, strategy, round FROM work_units").rows)


def seed_prefix_rollouts(store, outcomes: dict[str, dict[int, int]]) -> None:
    """Rollouts of the seed_store solution s1 of problem p1: per sampling setting (completer m,
    N 4), ``outcomes[sampling][step]`` of 4 rollouts correct from the question (step 0, prefix
    hash "root") or from prefix ``step`` (hash h<step>), as math_shepherd units."""
    for sampling, by_prefix in outcomes.items():
        for step, correct in by_prefix.items():
            unit = f"{sampling[-3]}{step}"
            store.insert_rows("work_units", [{
                "unit_id": unit, "problem_id": "p1", "prefix_hash": "root" if step == 0 else f"h{step}",
                "completer_model": "m", "params": sampling, "strategy": "math_shepherd", "budget": 4, "n": 4,
                "k": sum(i < correct for i in range(4)), "round": 0, "solution_id": "s1", "step_index": step, "run_id": "r"}])
            store.insert_rows("rollouts", [{
                "rollout_id": f"{unit}:{i}", "unit_id": unit, "sample_index": i, "solution_id": "s1",
                "step_index": step, "text": "x", "answer": None, "correct": i < correct, "grade_status": "ok",
                "num_tokens": 3, "run_id": "r"} for i in range(4)])


def run_label_processes_at_once(command: list[str], tmp_path, timeout_s: float) -> list[dict]:
    """Two copies of a `prmf label ... --json` command started together, each with its own
    Prefect home (its own temporary API server and database) and log; their JSON summaries once
    both succeeded."""
    import json
    import os
    import subprocess

    procs = []
    for name in ("a", "b"):
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / f"prefect-{name}"), "PRMF_FAULT": ""}
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                      stderr=(tmp_path / f"{name}.log").open("w"), text=True))
    summaries = []
    for name, proc in zip("ab", procs):
        out, _ = proc.communicate(timeout=timeout_s)
        assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        summaries.append(json.loads(out))
    return summaries
