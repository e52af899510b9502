"""Children that die with their parent, even when the parent is SIGKILLed (Linux).

``die_with_parent`` is a ``preexec_fn`` for ``subprocess.Popen``: it asks the kernel
(``prctl(PR_SET_PDEATHSIG)``) to send the child a signal when the process that started it
exits, however it exits. Elsewhere (no prctl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


def parent_death_signal(sig: int = signal.SIGTERM, *, block: bool = False):
    """A preexec_fn setting ``sig`` as this child's parent-death signal. ``block``: the child
    starts with ``sig`` blocked (kept pending), for a child that must handle it and unblocks it
    once its handler is in place."""
    prctl = _prctl()
    parent = os.getpid()

    def preexec() -> None:
        if block:
            signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec
