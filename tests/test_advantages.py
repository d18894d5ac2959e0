"""Process advantages (PAV): the formulas on hand-computed numbers, and the store's
``step_advantages`` macro on a hand-built store (a real DuckDB file) against the same numbers."""

from __future__ import annotations

import pytest

from tasks.labelling.advantages import advantages, best_of_k, effective_rewards
from tasks.store import Store
from tests.helpers import seed_prefix_rollouts, seed_store


def test_best_of_k_is_one_minus_the_chance_that_all_k_fail():
    assert best_of_k(0.5, 2) == 0.75
    assert best_of_k(0.2, 4) == pytest.approx(0.5904)  # 1 - 0.8^4
    assert best_of_k(0.0, 8) == 0.0 and best_of_k(1.0, 3) == 1.0 and best_of_k(0.3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        best_of_k(0.5, 0)
    with pytest.raises(ValueError):
        best_of_k(1.5, 2)


def test_advantage_is_the_change_in_value_and_the_reward_adds_alpha_of_it():
    values = [0.5, 0.75, 0.25, 1.0]  # Q(0) the question, Q(1), Q(2), Q(3) the outcome
    assert advantages(values) == [0.25, -0.5, 0.75]
    assert advantages([None, 0.5, None]) == [None, None]
    assert effective_rewards([0.75, 0.25, 1.0], [0.25, -0.5, 0.75], 0.5) == [0.875, 0.0, 1.375]
    assert effective_rewards([0.75, None], [None, 0.5], 0.5) == [None, None]


A, B = '{"t": "A"}', '{"t": "B"}'  # two rollout sampling settings (JSON, as stored)


def _hand_built(store: Store) -> None:
    """One problem, one wrong 3-step solution; two completer evaluations of its prefixes:
    base (m, sampling A, N 4): question 1/4, prefix 1 2/4, prefix 2 0/4;
    prover (m, sampling B, N 4): question 2/4, prefix 1 4/4, prefix 2 1/4."""
    seed_store(store, {}, False, [True, False, False])  # p1, wrong solution s1 with steps a b c (h1..h3)
    outcomes = {A: {0: 1, 1: 2, 2: 0}, B: {0: 2, 1: 4, 2: 1}}  # correct of 4, by prefix
    seed_prefix_rollouts(store, outcomes)


def test_step_advantages_macro_matches_hand_computed_values(tmp_path):
    with Store(tmp_path / "pav.duckdb") as store:
        _hand_built(store)
        rows = store.query(
            "SELECT step_index, prover, q_pi, q_mu_before, q_mu, a_mu, reward, q_source FROM step_advantages(k := 2) "
            "WHERE base_params = ? ORDER BY prover, step_index", [A]).as_dicts()
        alpha_02 = store.query("SELECT step_index, reward FROM step_advantages(alpha := 0.2, k := 2) "
                               "WHERE base_params = ? AND prover = 'bo2' ORDER BY step_index", [A]).rows
    bo2 = [r for r in rows if r["prover"] == "bo2"]
    prover = [r for r in rows if r["prover"] != "bo2"]
    # Base values Q_pi: 0.25 (question), 0.5, 0, and the wrong outcome 0.
    assert [r["q_pi"] for r in bo2] == [0.5, 0.0, 0.0]
    assert [r["q_source"] for r in bo2] == ["rollouts", "rollouts", "outcome"]
    # Best-of-2: 1 - 0.75^2 = 0.4375, 1 - 0.5^2 = 0.75, 0, 0.
    assert [r["q_mu_before"] for r in bo2] == [0.4375, 0.75, 0.0]
    assert [r["a_mu"] for r in bo2] == [0.3125, -0.75, 0.0]
    assert [r["reward"] for r in bo2] == [0.65625, -0.375, 0.0]  # alpha 0.5
    assert [step for step, _ in alpha_02] == [1, 2, 3]
    assert [reward for _, reward in alpha_02] == pytest.approx([0.5625, -0.15, 0.0])
    # The separate prover: values 0.5, 1.0, 0.25, 0 -> advantages 0.5, -0.75, -0.25.
    assert {r["prover"] for r in prover} == {"m@" + _md5_8(B) + "/N4"}
    assert [r["a_mu"] for r in prover] == [0.5, -0.75, -0.25]
    assert [r["reward"] for r in prover] == [0.75, -0.375, -0.125]


def _md5_8(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()[:8]


def test_gold_check_reports_each_base_and_prover_on_the_hand_built_store(tmp_path):
    from tasks.labelling.gold_check import gold_check

    with Store(tmp_path / "pav.duckdb") as store:
        _hand_built(store)
        checks = {(c.base, c.prover): c for c in gold_check(store, alpha=0.5, n_boot=50)}
    base_a, base_b = f"m@{_md5_8(A)}/N4", f"m@{_md5_8(B)}/N4"
    # Each base with Best-of-2/4/8 and the other evaluation as provers.
    assert set(checks) == {(base, prover) for base, other in ((base_a, base_b), (base_b, base_a))
                           for prover in ("bo2", "bo4", "bo8", other)}
    # Base A over the non-final steps: step 1 (gold right) Q 0.5, A_bo2 0.3125; step 2 (gold wrong)
    # Q 0, A_bo2 -0.75: every score orders the one right-wrong pair, AUC 1 in every resample.
    bo2 = checks[(base_a, "bo2")]
    assert (bo2.steps, bo2.problems, bo2.gold_correct_share, bo2.negative_a_on_gold_correct) == (2, 1, 0.5, 0.0)
    assert (bo2.q_pi.value, bo2.a_mu.value, bo2.reward.value) == (1.0, 1.0, 1.0)
    assert (bo2.reward_minus_q_pi.value, bo2.reward_minus_q_pi.ci_low) == (0.0, 0.0)
    # Base B with prover A: A_mu = 0.5 - 0.25 = 0.25 on step 1, 0 - 0.5 = -0.5 on step 2.
    assert checks[(base_b, base_a)].a_mu.value == 1.0


def test_cli_advantages_prints_the_gold_check_and_refuses_a_store_without_gold(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    with Store(tmp_path / "pav.duckdb") as store:
        _hand_built(store)
    result = CliRunner().invoke(app, ["advantages", "--db", str(tmp_path / "pav.duckdb"), "--n-boot", "20", "--json"])
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout)
    assert {r["prover"] for r in rows} >= {"bo2", "bo4", "bo8"} and all(r["steps"] == 2 for r in rows)
    Store(tmp_path / "empty.duckdb").close()
    empty = CliRunner().invoke(app, ["advantages", "--db", str(tmp_path / "empty.duckdb")])
    assert empty.exit_code != 0 and "no steps with a gold label" in empty.output
