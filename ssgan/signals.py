"""Stopping a run cleanly: Ctrl-C (SIGINT) and SIGTERM (what ``timeout``, Docker, Slurm and systemd send)
ask the training loop to stop after the step in progress, so the checkpoint written on the way out holds a
whole step. A second signal stops at once."""
from __future__ import annotations

import signal
import sys


class StopRequests:
    """Ctrl-C (SIGINT) and SIGTERM set a flag checked between steps, so the checkpoint written on the way
    out holds a whole step; a second signal stops at once."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handler(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        name = "interrupt" if signum == signal.SIGINT else "SIGTERM"
        print(f"\n{name}: finishing this step and writing a checkpoint (again to quit at once)", file=sys.stderr)

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False
