"""The descendant guard kills a SIGKILLed process's children, including forked ones that hold
the guard's pipe open (vLLM forks its engine core on CPU), also when the dead process stays
unreaped for a while (CI failure of stop 20: a killed run's engine outlived it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

PARENT = """
import multiprocessing, os, signal, sys, time
from tasks.guard import guard_descendants
guard_descendants()
forked = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,))
forked.start()
spawned = __import__("subprocess").Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(forked.pid, spawned.pid, flush=True)
time.sleep(1.5)  # the guard's snapshot refreshes every second
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_children_die_with_a_killed_parent_even_forked_ones(tmp_path):
    pids = tmp_path / "pids"
    # A file, not a pipe: the children inherit it and would keep a pipe open.
    with pids.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", PARENT], stdout=out, stderr=subprocess.DEVNULL,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    while len(pids.read_text().split()) < 2:
        time.sleep(0.05)
    children = [psutil.Process(int(pid)) for pid in pids.read_text().split()]
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    # Dead but not yet reaped, for a few of the guard's polls (a loaded machine's test runner
    # reaps late): its children are reparented by then and no longer listed under it.
    time.sleep(3)
    assert proc.wait(timeout=60) == -9
    deadline = time.monotonic() + 15
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [c for c in children if _alive(c)]
        time.sleep(0.2)
    for child in alive:
        child.kill()  # clean up before failing
    assert alive == [], f"children outlived their killed parent: {[c.pid for c in alive]}"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
