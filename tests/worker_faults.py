"""Faults the executor tests (test_executors, test_ray) inject into worker processes, and what they
read back: a fake trainer marks each start of a run with a file ``<activation>-<seed>.<pid>`` in a
folder ``marks``, one line per start."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path


def starts(marks: Path) -> list[str]:
    """One ``<activation>-<seed>`` per start the fake trainer marked, retries included, sorted."""
    return sorted(p.stem for p in marks.iterdir() for _ in p.read_text().splitlines())


@contextlib.contextmanager
def killing_a_starting_worker(marks: Path, which=lambda mark: True, timeout: float = 60.0):
    """While the block runs, a thread kills (SIGKILL) the worker process of the first run that
    starts (the first mark, by name, for which ``which(mark)`` holds), once; yields the list it adds
    the killed run's ``<activation>-<seed>`` to."""
    killed: list[str] = []

    def kill():
        deadline = time.time() + timeout
        while time.time() < deadline and not killed:
            started = sorted(p for p in marks.iterdir() if which(p))
            if started:
                os.kill(int(started[0].suffix[1:]), signal.SIGKILL)
                killed.append(started[0].stem)
            time.sleep(0.05)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        yield killed
    finally:
        killer.join()
