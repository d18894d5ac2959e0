"""An implicit PRM wherever a PRM goes: the registry's PRM slot, best-of-N evaluation on each
read-out (one cached score list, r_t, per candidate), ProcessBench (its sigmoid read-out) and
``prmf score``. The read-out transform and the beam-search rules on hand-computed numbers; one
real implicit PRM (SmolLM2 cut to 4 layers, trained as in tests/test_implicit_prm.py) on a
hand-written pool file, a real DuckDB store and real Prefect flow runs. No engine."""

from __future__ import annotations

import json
import math
import shutil
from itertools import accumulate

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from flows.evaluate import evaluate
from tasks.best_of_n import cached_verifier, pool_candidates, scoring_settings
from tasks.config import BeamSettings, EvalConfig, TrainConfig
from tasks.processbench import load_processbench
from tasks.registry import RegistryError, find_model, get_model
from tasks.search.beam import check_ranking, ranking_reward
from tasks.search.runner import method_name
from tasks.store import Store
from tasks.training import train_reward_model
from tasks.verifiers import VerifierError
from tasks.verifiers.base import SolutionScores
from tasks.verifiers.implicit import ReadoutView, apply_readout, with_readout
from tests.helpers import seed_labelled_arith
from tests.test_training_precision import base  # noqa: F401  (base: SmolLM2 cut to 4 layers)

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machines a second one mostly spin-waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- pure: the read-out and the beam-search rules ------------------------------------------------


def test_apply_readout_on_hand_computed_numbers():
    rewards = [0.5, -1.0, 2.0]
    assert apply_readout(rewards, "step") == (0.5, -1.0, 2.0)
    assert apply_readout(rewards, "cumulative") == pytest.approx((0.5, -0.5, 1.5))
    # sigmoid(0.5) = 0.6224593312, sigmoid(-0.5) = 0.3775406688, sigmoid(1.5) = 0.8175744762
    assert apply_readout(rewards, "sigmoid") == pytest.approx((0.6224593312, 0.3775406688, 0.8175744762))
    # A truncated candidate: the dropped leading steps stay None, the running sum starts after them.
    assert apply_readout([None, None, 0.5, -1.0], "cumulative") == (None, None, 0.5, -0.5)
    assert apply_readout([None, 0.0], "sigmoid") == (None, 0.5)
    assert apply_readout([], "cumulative") == ()
    with pytest.raises(VerifierError, match="unscored step after a scored one"):
        apply_readout([0.5, None, 1.0], "step")
    with pytest.raises(VerifierError, match="unknown implicit-PRM read-out 'logit'"):
        apply_readout(rewards, "logit")


class FakeImplicit:
    """Records the read-out each call asks for."""

    kind, path, max_length, meta = "implicit", None, 64, {"kind": "implicit", "readout": "step", "beta": 0.05}

    def __init__(self):
        self.asked = []

    def score_many(self, items, advance=None, readout=None):
        self.asked.append(readout)
        return [SolutionScores((0.0,) * len(steps)) for _, steps in items]


def test_with_readout_wraps_only_an_implicit_prm():
    inner = FakeImplicit()
    view = with_readout(inner, "sigmoid")
    assert isinstance(view, ReadoutView) and view.kind == "implicit" and view.max_length == 64
    assert view.meta["readout"] == "sigmoid" and inner.meta["readout"] == "step"  # the wrapped one is unchanged
    view.score_many([("q", ["a", "b"])])
    view.score_many([("q", ["a"])], readout="step")
    assert inner.asked == ["sigmoid", "step"]
    step_tag = type("StepTag", (), {"kind": "prm", "meta": {}})()
    assert with_readout(step_tag, "sigmoid") is step_tag
    with pytest.raises(VerifierError):
        with_readout(inner, "logit")


def test_beam_ranking_of_an_implicit_prm():
    pav, q = BeamSettings(), BeamSettings(reward="q")
    implicit = {"kind": "implicit", "readout": "cumulative"}
    # pav reads Q as a probability: an implicit PRM must be read out as sigmoid.
    with pytest.raises(ValueError, match="needs Q in \\[0, 1\\].*--implicit-readout sigmoid, or --reward q"):
        check_ranking(pav, "implicit", "cumulative")
    with pytest.raises(ValueError, match="needs Q in"):
        ranking_reward([0.2, 1.5], pav, implicit)
    check_ranking(pav, "implicit", "sigmoid")
    check_ranking(pav, "prm", None)
    assert ranking_reward([0.2, 1.5], q, implicit) == 1.5  # q: the read-out at the new step, as it is
    # pav on sigmoid read-outs 0.5 -> 0.75, K 4, alpha 0.5: 0.75 + 0.5 * ((1 - 0.25^4) - (1 - 0.5^4)) = 0.7792968750
    assert ranking_reward([0.5, 0.75], pav, {**implicit, "readout": "sigmoid"}) == pytest.approx(0.779296875)
    # The read-out is part of the search's method (and so of its identity).
    assert method_name(q, implicit) == "beam(C=3,q,readout=cumulative,steps=10)"
    assert method_name(q, {"kind": "prm"}) == "beam(C=3,q,steps=10)"


# --- one real implicit PRM ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def implicit(tmp_path_factory, base):  # noqa: F811
    """A tiny implicit PRM really trained and registered (2 optimizer steps). Its prm.json is set
    to read out as sigmoid by default: evaluation must cache r_t whatever that default says."""
    root = tmp_path_factory.mktemp("implicit")
    db = root / "store.duckdb"
    with Store(db) as store:
        seed_labelled_arith(store, 3)
        result = train_reward_model(store, TrainConfig(
            db=db, models_dir=root / "models", base_model=str(base), kind="implicit", epochs=2, batch_size=4,
            lr=1e-4, val_fraction=0.34, beta=0.05), run_id="fixture")
    meta_path = result.path / "prm.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "readout": "sigmoid"}))
    return {"db": db, "model_id": result.model_id, "path": result.path}


@pytest.fixture(scope="module")
def verifier(implicit):
    """The implicit PRM as evaluation loads it (the same cached object): loaded once for every test."""
    with Store(implicit["db"], read_only=True) as store:
        path = get_model(store, implicit["model_id"])["path"]
    return cached_verifier(path, scoring_settings(EvalConfig(db=implicit["db"])))


@pytest.fixture
def db(implicit, tmp_path):
    path = tmp_path / "store.duckdb"
    shutil.copy(implicit["db"], path)
    return path


def test_the_prm_slot_takes_a_named_implicit_prm_and_defaults_to_a_prm(db, implicit):
    model_id = implicit["model_id"]
    with Store(db) as store:
        assert get_model(store, model_id, "prm")["kind"] == "implicit"
        assert find_model(store, model_id, "prm")["model_id"] == model_id
        assert find_model(store, None, "prm") is None  # the default is a step-tag PRM: there is none
        with pytest.raises(RegistryError, match="no PRM is registered"):
            get_model(store, None, "prm")
        with pytest.raises(RegistryError, match=f"model '{model_id}' is an implicit PRM, not an ORM"):
            get_model(store, model_id, "orm")
        store.query("INSERT INTO prm_models SELECT * REPLACE ('orm-x' AS model_id, 'orm' AS kind, false AS promoted) "
                    "FROM prm_models")
        with pytest.raises(RegistryError, match="model 'orm-x' is an ORM, not a PRM or an implicit PRM"):
            get_model(store, "orm-x", "prm")


POOL = [  # answers and correctness given: nothing to grade
    {"question": "What is 2 + 3?", "answer": "5", "correct": [True, False, True, False],
     "responses": ["2 + 3 = 5\nThe answer is 5.", "2 + 3 = 6\nThe answer is 6.", "The answer is 5.",
                   "2 + 3 = 4\n4 + 0 = 4\nThe answer is 4."]},
    {"question": "Tom has 9 cards and gives away 4. How many cards?", "answer": "5", "correct": [True, False, False, True],
     "responses": ["9 - 4 = 5\nThe answer is 5.", "9 - 4 = 6\nThe answer is 6.", "9 + 4 = 13\nThe answer is 13.",
                   "The answer is 5."]},
]
AGGREGATE = {"min": min, "last": lambda s: s[-1], "prod": math.prod, "mean": lambda s: sum(s) / len(s)}


def by_hand(rewards: list[float], readout: str) -> list[float]:
    q = list(accumulate(rewards))
    return {"step": rewards, "cumulative": q, "sigmoid": [sig(x) for x in q]}[readout]


@pytest.mark.usefixtures("prefect_harness")
def test_best_of_n_caches_step_rewards_and_reads_them_out(db, implicit, verifier, tmp_path):
    model_id = implicit["model_id"]
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in POOL))
    cached, accuracy = {}, {}
    for readout in ("cumulative", "step", "sigmoid"):
        config = EvalConfig(db=db, n_max=4, prm=model_id, implicit_readout=readout)
        result = evaluate(config=config, pool_file=pool_file)
        [evaluation] = result["evaluations"]
        assert evaluation.prm == model_id and evaluation.orm is None and evaluation.problems == 2
        with Store(db) as store:
            rows = store.query(
                "SELECT s.problem_id, s.candidate_index, c.question, c.steps, s.step_scores, s.truncated "
                "FROM eval_scores s JOIN eval_candidates c USING (pool_id, problem_id, candidate_index) "
                "WHERE s.model_id = ? ORDER BY s.problem_id, s.candidate_index", [model_id]).rows
            found = {(m, a, n): acc for m, a, n, acc in store.query(
                "SELECT method, aggregation, n, accuracy FROM eval_results WHERE run_id = ?", [result["run_id"]]).rows}
            keys, problems = pool_candidates(store, result["pools"][0], model_id, None, readout)
        stored = {(p, i): list(s) for p, i, _, _, s, _ in rows}
        assert len(rows) == 8 and not any(t for *_, t in rows)
        if cached:  # scored once: the later read-outs reuse the same rows
            assert stored == cached
        cached = stored
        # The cache holds r_t, although prm.json says sigmoid: what score_many(readout="step") gives.
        expected = verifier.score_many([(q, json.loads(steps)) for _, _, q, steps, _, _ in rows], readout="step")
        for (_, _, _, steps, scores, _), e in zip(rows, expected):
            assert len(scores) == len(json.loads(steps)) and scores == pytest.approx(list(e.step_scores), abs=1e-5)
        assert max(abs(x) for s in stored.values() for x in s) > 1e-4  # the trained model moved

        # The candidates carry the read-out, and best-of-N picks what choosing by hand picks.
        for key, cands in zip(keys, problems):
            for i, cand in enumerate(cands):
                assert list(cand.step_scores) == pytest.approx(by_hand(stored[(key, i)], readout), abs=1e-12)
        for how, agg in AGGREGATE.items():
            hits = []
            for key, cands in zip(keys, problems):
                values = [agg(by_hand(stored[(key, i)], readout)) for i in range(len(cands))]
                best = max(range(len(values)), key=lambda i: (values[i], -i))  # ties: the earliest
                hits.append(cands[best].correct)
            assert found[("prm_best_of_n", how, 4)] == pytest.approx(sum(hits) / len(hits)), (readout, how)
        accuracy[readout] = found
    # sigmoid is monotone: min and last choose alike on q_t and on sigmoid(q_t).
    for how in ("min", "last"):
        assert accuracy["cumulative"][("prm_best_of_n", how, 4)] == accuracy["sigmoid"][("prm_best_of_n", how, 4)]


@pytest.mark.usefixtures("prefect_harness")
def test_processbench_thresholds_the_sigmoid_readout(db, implicit, verifier):
    model_id = implicit["model_id"]
    result = runner.invoke(app, ["processbench", "--split", "gsm8k", "--limit", "2", "--threshold", "0.5",
                                 "--model", model_id, "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["model_id"], data["samples"], data["threshold_source"]) == (model_id, 2, "given")
    samples = load_processbench("gsm8k", 2)
    rewards = verifier.score_many([(s.question, list(s.steps)) for s in samples], readout="step")
    # By hand: the first step with sigmoid(q_t) < 0.5, i.e. q_t < 0 (-1: none).
    predicted = [next((t for t, x in enumerate(by_hand(list(r.step_scores), "sigmoid")) if x < 0.5), -1)
                 for r in rewards]
    errors = [p == s.label for p, s in zip(predicted, samples) if s.label != -1]
    correct = [p == -1 for p, s in zip(predicted, samples) if s.label == -1]
    assert data["error_accuracy"] == pytest.approx(sum(errors) / len(errors))
    assert data["correct_accuracy"] == pytest.approx(sum(correct) / len(correct))
    with Store(db, read_only=True) as store:
        assert store.query("SELECT model_id, split FROM processbench_results").rows == [(model_id, "gsm8k")]


def test_score_prints_the_implicit_readout(db, implicit, verifier):
    model_id = implicit["model_id"]
    args = ["score", "--prm", model_id, "--question", "What is 2 + 3?", "--solution", "2 + 3 = 5\\nThe answer is 5.",
            "--solution", "2 + 3 = 6\\n6 - 1 = 5\\nThe answer is 5.", "--db", str(db)]
    [right, wrong] = verifier.score_many(
        [("What is 2 + 3?", ["2 + 3 = 5", "The answer is 5."]),
         ("What is 2 + 3?", ["2 + 3 = 6", "6 - 1 = 5", "The answer is 5."])], readout="step")
    for readout in (None, "sigmoid"):
        result = runner.invoke(app, args + (["--readout", readout] if readout else []))
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        shown = readout or "cumulative"
        assert [(line["model_id"], line["readout"]) for line in lines] == [(model_id, shown)] * 2
        for line, r in zip(lines, (right, wrong)):
            assert line["step_scores"] == pytest.approx(by_hand(list(r.step_scores), shown), abs=2e-6)
    bad = runner.invoke(app, args + ["--readout", "logit"])
    assert bad.exit_code == 2 and "--readout 'logit'" in bad.stderr
