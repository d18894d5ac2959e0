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
                                          "budget": len(outcomes), "solution_id": "s1", "step_index": step,
                                          "run_id": "r"}])
        store.insert_rows("rollouts", [{"rollout_id": f"{unit}:{i}", "unit_id": unit, "sample_index": i,
                                        "solution_id": "s1", "step_index": step, "text": "x", "answer": None,
                                        "correct": c, "grade_status": "ok", "num_tokens": 3, "run_id": "r"}
                                       for i, c in enumerate(outcomes)])
