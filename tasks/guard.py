"""Descendant guard: when this process dies, even by SIGKILL, its child processes die too.

vLLM's engine core and workers, and Prefect's temporary API server, outlive a killed parent
(measured: after `kill -9` of a label run the vLLM worker kept a core at 98%; on a GPU box it
would keep the GPU's memory and the rerun could not start an engine). A small guard process
watches a pipe that only this process writes to (the kernel closes it however this process
ends) and, since a forked child inherits that pipe and keeps it open, also polls this process
itself. Until then the guard refreshes a snapshot of this process's descendants every second;
when this process is gone it kills the ones still running (psutil checks creation times, so a
reused pid is never hit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

_GUARD_CODE = """
import select, sys, psutil
parent = psutil.Process(int(sys.argv[1]))
me = psutil.Process()
snapshot = []

def gone():
    try:
        return not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True

while True:
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready and not sys.stdin.buffer.read1(1):
        break  # EOF: the guarded process is gone
    if gone():
        # A forked child (vLLM forks its engine core) inherits the pipe's write end and keeps
        # it open, so EOF alone can come late or never: also watch the process itself.
        break
    try:
        snapshot = [p for p in parent.children(recursive=True) if p.pid != me.pid]
    except psutil.Error:
        # A short-lived child vanished while being listed: keep the last snapshot. Only the
        # parent's own end (EOF above, or it no longer running) ends the watch.
        if not parent.is_running():
            break
for p in snapshot:
    try:
        if p.is_running():
            p.kill()
    except psutil.Error:
        pass
"""

_guard: subprocess.Popen | None = None
_lock = threading.Lock()


def guard_descendants() -> None:
    """Start this process's guard once (idempotent, cheap to call)."""
    global _guard
    with _lock:
        if _guard is not None and _guard.poll() is None:
            return
        # Own session: a signal to this process's group must not take the guard down with it.
        _guard = subprocess.Popen(
            [sys.executable, "-c", _GUARD_CODE, str(os.getpid())],
            stdin=subprocess.PIPE, close_fds=True, start_new_session=True,
        )
