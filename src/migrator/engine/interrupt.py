"""Ctrl-C (and SIGTERM) for the executor: the first one asks for a graceful stop, the second
exits now.

A graceful stop lets the running phases reach their checkpoint and hands the steps back
(their leases released), so that another worker or a resume takes them at once; SIGTERM is
what a service manager or ``kill`` sends a worker, and it gets the same treatment.

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
    """Route SIGINT and SIGTERM to ``on_first`` (then ``os._exit``) while the block runs.

    Outside the main thread signals cannot be handled; the block then runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = 0

    def handle(signum: int, _frame: FrameType | None) -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            what = "interrupt" if signum == signal.SIGINT else "terminate"
            log.warning(
                "%s: finishing the running phases, starting nothing new "
                "(press Ctrl-C again to exit at once)", what
            )
            on_first()
            return
        log.critical("second interrupt: exiting now; resume with --resume")
        logging.shutdown()
        os._exit(EXIT_CODE_SECOND_INTERRUPT)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
