"""Process advantages against gold step labels (arith): does progress separate right from wrong
steps better than the value alone?

For every base evaluation and prover in the store (``step_advantages``: Best-of-2/4/8 of the
base policy and every separate prover), over non-final steps with a gold label and an advantage:
AUC of Q_pi, of A_mu and of the effective reward Q_pi + alpha A_mu against the gold label, each
with a 95% interval from a bootstrap over problems, and the paired AUC difference reward - Q_pi
on the same resamples (above 0: the advantage adds information).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.diagnostics import Interval, clustered_auc_intervals
from tasks.store import Store, internal_sql

SCORES = ("q_pi", "a_mu", "reward")


@dataclass(frozen=True)
class ProverGoldCheck:
    base: str  # the base evaluation: completer@hash(sampling)/N
    prover: str
    steps: int
    problems: int
    gold_correct_share: float
    negative_a_on_gold_correct: float | None  # share of gold-correct steps with A_mu < 0
    q_pi: Interval
    a_mu: Interval
    reward: Interval
    reward_minus_q_pi: Interval


def gold_check(store: Store, alpha: float = 0.5, n_boot: int = 1000, seed: int = 0) -> list[ProverGoldCheck]:
    rows = store.query(internal_sql("advantages_gold_steps"), {"alpha": alpha}).as_dicts()
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["base"], row["prover"]), []).append(row)
    found = []
    for (base, prover), group in sorted(groups.items()):
        labels = [bool(r["gold"]) for r in group]
        intervals = clustered_auc_intervals({name: [r[name] for r in group] for name in SCORES}, labels,
                                            [r["problem_id"] for r in group], differences=[("reward", "q_pi")],
                                            n_boot=n_boot, seed=seed)
        correct = [r for r in group if r["gold"]]
        found.append(ProverGoldCheck(
            base, prover, len(group), len({r["problem_id"] for r in group}), len(correct) / len(group),
            sum(r["a_mu"] < 0 for r in correct) / len(correct) if correct else None,
            intervals["q_pi"], intervals["a_mu"], intervals["reward"], intervals["reward-q_pi"],
        ))
    return found


def gold_check_table(checks: list[ProverGoldCheck]) -> tuple[list[str], list[list[str]]]:
    def cell(i: Interval, signed: bool = False) -> str:
        if i.value is None:
            return "n/a"
        fmt = "+.3f" if signed else ".3f"
        return f"{i.value:{fmt}} [{i.ci_low:{fmt}}, {i.ci_high:{fmt}}]" if i.ci_low is not None else f"{i.value:{fmt}}"

    columns = ["base", "prover", "steps (problems)", "gold-correct", "AUC Q_pi", "AUC A_mu", "AUC reward",
               "reward - Q_pi", "A<0 on gold-correct"]
    rows = [[c.base, c.prover, f"{c.steps} ({c.problems})", f"{c.gold_correct_share:.2f}", cell(c.q_pi),
             cell(c.a_mu), cell(c.reward), cell(c.reward_minus_q_pi, signed=True),
             "n/a" if c.negative_a_on_gold_correct is None else f"{c.negative_a_on_gold_correct:.2f}"]
            for c in checks]
    return columns, rows
