"""Ctrl-C for the executor: the first SIGINT asks for a graceful stop, the second exits now.

The second press uses ``os._exit``: worker threads may be inside a cloud call for minutes and
Python would otherwise wait for them. The state database stays consistent because every
change is one transaction; an uncommitted one is simply rolled back by the database.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)
EXIT_CODE_SECOND_INTERRUPT = 130


@contextmanager
def graceful_sigint(on_first: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT to ``on_first`` (then ``os._exit``) while the block runs.

    Outside the main thread signals cannot be handled; the block then runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def handle(_signum: int, _frame: FrameType | None) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            log.warning(
                "interrupt: finishing the running phases, starting nothing new "
                "(press Ctrl-C again to exit at once)"
            )
            on_first()
            return
        log.critical("second interrupt: exiting now; resume with --resume")
        logging.shutdown()
        os._exit(EXIT_CODE_SECOND_INTERRUPT)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
