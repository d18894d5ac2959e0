"""Run the factory continuously on this machine: ``make serve`` / ``make stop``.

``start`` brings up, in order, each step skipped when already done:
  1. a Prefect server (API and UI) on 127.0.0.1:$PRMF_SERVE_PORT (default 4200);
  2. the work pool ``prmf`` (process type) with a concurrency limit of one flow run per GPU
     (``nvidia-smi -L``; 1 without a GPU), so labelling, training and evaluation never share one;
  3. the deployments of ``infra/prefect.yaml`` (schedule and growth trigger included);
  4. one worker per GPU (one without a GPU), each running one flow run at a time with
     ``CUDA_VISIBLE_DEVICES`` set to its GPU; flow runs inherit this environment (PRMF_DB,
     PRMF_MODELS, PRMF_RETRAIN_THRESHOLD_STEPS) and run in this checkout.
``stop`` stops exactly the processes ``start`` started (their process groups, from pid files),
and nothing else. ``status`` says what runs.

State lives in $PRMF_SERVE_DIR (default ``.prefect/`` in the checkout): the server's SQLite
database (``PREFECT_HOME``), ``server.log``, ``worker-<i>.log`` and the pid files.
Set PRMF_SERVE_SCHEDULES=paused to deploy with the factory schedule paused.
Standard library only, so ``make stop`` works whatever state the virtual environment is in.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never another interface: the API has no authentication
POOL = "prmf"
STATE = Path(os.environ.get("PRMF_SERVE_DIR") or REPO / ".prefect").resolve()
PORT = int(os.environ.get("PRMF_SERVE_PORT", "4200"))
API_URL = f"http://{HOST}:{PORT}/api"
UI_URL = f"http://{HOST}:{PORT}"


class ServeError(RuntimeError):
    pass


def prefect_env() -> dict[str, str]:
    """The environment of every Prefect process and CLI call: this server, offline, no telemetry."""
    return {
        **os.environ,
        "PREFECT_HOME": str(STATE),
        "PREFECT_API_URL": API_URL,
        "PREFECT_UI_API_URL": API_URL,  # the browser's API address (defaults to port 4200)
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(PORT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PRMF_REPO": str(REPO),  # the deployments' working directory (pull step in prefect.yaml)
    }


def prefect_bin() -> str:
    found = Path(sys.executable).parent / "prefect"
    if not found.exists():
        raise ServeError(f"no prefect next to {sys.executable}; run `make serve` (it installs the environment first)")
    return str(found)


def prefect(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([prefect_bin(), "--no-prompt", *args], env=prefect_env(), cwd=REPO,
                          capture_output=True, text=True)
    if check and done.returncode:
        raise ServeError(f"`prefect {' '.join(args)}` failed:\n{(done.stdout + done.stderr).strip()[-2000:]}")
    return done


# --- processes we started --------------------------------------------------------------------

def pid_file(name: str) -> Path:
    return STATE / f"{name}.pid"


def running(name: str) -> int | None:
    """The pid of ``name`` if the process in its pid file still lives and is a Prefect process
    started from here (a reused pid belonging to something else is never touched)."""
    path = pid_file(name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (ValueError, IndexError, OSError):
        path.unlink(missing_ok=True)
        return None
    ours = b"prefect" in b" ".join(cmdline) and {f"PREFECT_HOME={STATE}".encode(), f"PRMF_SERVE_ROLE={name}".encode()} <= set(environ)
    if not ours:
        path.unlink(missing_ok=True)
        return None
    return pid


def spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    """Start ``args`` in its own session (so ``stop`` can end it with everything it started),
    logging to ``<name>.log``; records the pid. ``PRMF_SERVE_ROLE`` marks it as ours."""
    log = open(STATE / f"{name}.log", "ab")
    process = subprocess.Popen(args, env={**prefect_env(), **env, "PRMF_SERVE_ROLE": name}, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    pid_file(name).write_text(f"{process.pid}\n")
    return process.pid


def start_and_wait(name: str, args: list[str], ready: Callable[[], bool], failure: str, timeout_s: float,
                   env: dict[str, str] | None = None) -> int:
    """Spawn ``name`` and wait until ``ready()``; if it dies or times out, stop it and raise with
    the end of its log."""
    pid = spawn(name, args, env or {})
    deadline = time.monotonic() + timeout_s
    while not ready():
        if running(name) is None or time.monotonic() > deadline:
            tail = (STATE / f"{name}.log").read_text(errors="replace")[-3000:]
            stop_process(name)
            raise ServeError(f"the {name} {failure} within {timeout_s:.0f} s; {STATE / f'{name}.log'} ends with:\n{tail}")
        time.sleep(0.5)
    return pid


def stop_process(name: str, grace_s: float = 30.0) -> int | None:
    """SIGTERM the process group of ``name``, SIGKILL it after ``grace_s``. Returns the pid stopped."""
    pid = running(name)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        return None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    return pid


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, exited but not reaped, do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# --- the steps of start ----------------------------------------------------------------------

def api(path: str, body: dict | None = None) -> object:
    request = urllib.request.Request(f"{API_URL}{path}", data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read() or b"null")


def healthy() -> bool:
    try:
        return api("/health") is True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def gpu_count() -> int:
    """GPUs on this machine: ``nvidia-smi -L`` lines (0 without the tool or a GPU)."""
    if not shutil.which("nvidia-smi"):
        return 0
    done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in done.stdout.splitlines()) if done.returncode == 0 else 0


def start_server(timeout_s: float = 180.0) -> None:
    if pid := running("server"):
        deadline = time.monotonic() + timeout_s  # it may be starting still
        while not healthy():
            if time.monotonic() > deadline:
                raise ServeError(f"the server (pid {pid}) runs but does not answer on {API_URL}; `make stop`, then retry")
            time.sleep(0.5)
        print(f"server: already running (pid {pid}) at {UI_URL}")
        return
    with socket.socket() as probe:
        if probe.connect_ex((HOST, PORT)) == 0:
            raise ServeError(f"port {PORT} on {HOST} is taken by another process; set PRMF_SERVE_PORT to a free port")
    pid = start_and_wait("server", [prefect_bin(), "server", "start", "--host", HOST, "--port", str(PORT)],
                         healthy, f"did not come up on {API_URL}", timeout_s)
    print(f"server: started (pid {pid}) at {UI_URL}")


def ensure_pool(limit: int) -> None:
    if prefect("work-pool", "inspect", POOL, check=False).returncode:
        prefect("work-pool", "create", POOL, "--type", "process")
    prefect("work-pool", "set-concurrency-limit", POOL, str(limit))
    print(f"work pool {POOL!r}: at most {limit} flow run(s) at a time (one per GPU)")


def deploy() -> None:
    prefect("deploy", "--prefect-file", "infra/prefect.yaml", "--all")
    if os.environ.get("PRMF_SERVE_SCHEDULES", "active") == "paused":
        prefect("deployment", "schedule", "pause", "--all")
    names = sorted(f"{d['flow_name']}/{d['name']}" for d in _deployments())
    print(f"deployments: {', '.join(names)}"
          + (" (schedules paused)" if os.environ.get("PRMF_SERVE_SCHEDULES") == "paused" else ""))


def _deployments() -> list[dict]:
    flows = {f["id"]: f["name"] for f in api("/flows/filter", {})}  # type: ignore[union-attr]
    return [{**d, "flow_name": flows.get(d["flow_id"], "?")} for d in api("/deployments/filter", {})]  # type: ignore[union-attr]


def worker_names(gpus: int) -> list[str]:
    return [f"worker-{i}" for i in range(max(1, gpus))]


def start_workers(gpus: int, timeout_s: float = 60.0) -> None:
    """One worker per GPU, each running one flow run at a time on its own GPU
    (``CUDA_VISIBLE_DEVICES``); one worker without a GPU."""
    for index, name in enumerate(worker_names(gpus)):
        if pid := running(name):
            print(f"{name}: already running (pid {pid})")
            continue
        worker = f"{POOL}-{socket.gethostname()}-{index}"
        since = datetime.now(timezone.utc)
        pid = start_and_wait(name, [prefect_bin(), "worker", "start", "--pool", POOL, "--type", "process",
                                    "--limit", "1", "--name", worker],
                             lambda: _heartbeat(worker) >= since, "did not come online", timeout_s,
                             env={"CUDA_VISIBLE_DEVICES": str(index)} if gpus else {})
        print(f"{name}: started (pid {pid}), polling pool {POOL!r}" + (f" on GPU {index}" if gpus else ""))


def _heartbeat(worker: str) -> datetime:
    """When the worker named ``worker`` last reported to the server (long ago if never)."""
    for row in api(f"/work_pools/{POOL}/workers/filter", {}):  # type: ignore[union-attr]
        if row["name"] == worker and row.get("last_heartbeat_time"):
            return datetime.fromisoformat(row["last_heartbeat_time"])
    return datetime.min.replace(tzinfo=timezone.utc)


def worker_store() -> Path:
    """The store the running workers' flow runs write: their PRMF_DB, else prmf.duckdb in the checkout."""
    environ = Path(f"/proc/{running('worker-0')}/environ").read_bytes().split(b"\0")
    db = next((e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"PRMF_DB=")), "prmf.duckdb")
    return (REPO / db).resolve()


def start() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count()
    start_server()
    ensure_pool(max(1, gpus))
    deploy()
    start_workers(gpus)
    store = worker_store()
    print(f"""
The factory is served. UI: {UI_URL}   store: {store}   logs: {STATE}/*.log
  run on demand:    PREFECT_API_URL={API_URL} .venv/bin/prefect deployment run 'label/label' \\
                      --param config='{{"dataset": {{"name": "arith", "limit": 20}}}}'
  CLI runs in UI:   export PREFECT_API_URL={API_URL}   (then prmf label / prmf factory show up too)
  stop it all:      make stop""")


def started_workers() -> list[str]:
    """The workers with a pid file in the state folder (``worker-<i>``)."""
    return sorted(path.stem for path in STATE.glob("worker-*.pid"))


def stop() -> None:
    workers = started_workers()
    stopped = [(name, pid) for name in (*workers, "server") if (pid := stop_process(name)) is not None]
    for name, pid in stopped:
        print(f"{name}: stopped (pid {pid} and its process group)")
    if not stopped:
        print(f"nothing to stop (no server or worker started from {STATE})")


def status() -> int:
    workers = started_workers() or ["worker-0"]
    up = {name: running(name) for name in ("server", *workers)}
    for name, pid in up.items():
        print(f"{name}: {'running (pid %d)' % pid if pid else 'stopped'}")
    if up["server"]:
        print(f"UI: {UI_URL} ({'healthy' if healthy() else 'not answering'})")
    return 0 if all(up.values()) else 1


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    actions = {"start": start, "stop": stop, "status": status}
    if command not in actions:
        print(f"usage: {argv[0]} start|stop|status", file=sys.stderr)
        return 2
    try:
        return actions[command]() or 0
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
