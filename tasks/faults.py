"""Deterministic fault injection for crash tests.

``PRMF_FAULT=NAME:K`` kills this process with SIGKILL the K-th time checkpoint NAME is reached
(K defaults to 1). Unset, a checkpoint costs one dictionary lookup. The crash tests use it to
stop a real label run at exact points (mid-transaction, right after a commit, ...) and check
that rerunning completes the job with exact counts.

Checkpoints: ``generate-batch-stored``, ``label-batch-generated`` (rollouts sampled, nothing
stored yet), ``label-in-transaction`` (units written, rollouts not yet, transaction open),
``label-batch-stored``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()


def checkpoint(name: str) -> None:
    spec = os.environ.get("PRMF_FAULT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
