"""Client sides of the bulk and extension benchmarks, each in a fresh interpreter.

Usage: ``python bench/_bulk_worker.py TASK JSON`` prints one JSON object, like
``bench/_worker.py`` (whose message and memory probes it shares).

Tasks:
  bulk-memory  a :class:`smtpc.pool.BulkSender` fed ``messages`` distinct
               2 KB messages from a generator over a pool of ``sessions``
               sessions. After a warm-up (imports, first sessions), the peak
               resident set (VmHWM, reset) and, with ``trace``, tracemalloc's
               peak and what is still allocated after a garbage collection
               are read at each of ``checkpoints`` results.
  extensions   one session sending ``messages`` messages (2 KB, or the file
               at ``path``) with smtpc's ``pipelining`` / ``chunking``
               options or with smtplib; seconds from connect to QUIT.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _worker import (  # noqa: E402 - after the path to bench/
    FROM,
    LOCAL_NAME,
    TO,
    _reset_peak,
    _status,
    serve,
    small_message,
)

WARM_UP = 500


def _distinct(count: int, start: int = 0) -> Iterator[tuple[str, list[str], bytes]]:
    # A new content object per message: were the sender to keep messages,
    # 100,000 of them would hold 200 MB.
    body = small_message()
    for n in range(start, start + count):
        tag = f"X-Sequence: {n:09d}\r\n".encode()
        yield FROM, TO, tag + body


async def _bulk(
    host: str, port: int, sessions: int, messages: int, checkpoints: list[int]
) -> dict[str, Any]:
    from smtpc.pool import BulkSender, Pool

    pool = Pool(host, port, size=sessions, max_messages=1000, local_hostname=LOCAL_NAME)
    async with pool:
        sender = BulkSender(pool, max_attempts=1)
        # Warm-up: lazy imports, first sessions, the event loop's own caches.
        async for _ in sender.send(_distinct(WARM_UP)):
            pass
        gc.collect()
        tracing = tracemalloc.is_tracing()
        if tracing:
            tracemalloc.reset_peak()
            traced_base = tracemalloc.get_traced_memory()[0]
        if not _reset_peak():
            raise RuntimeError("VmHWM cannot be reset: Linux's clear_refs is needed")
        rss_base = _status("VmRSS") or 0
        figures: dict[str, Any] = {"rss_peak": {}, "traced_peak": {}, "traced_live": {}}
        delivered = 0
        start = time.perf_counter()
        async for result in sender.send(_distinct(messages, WARM_UP)):
            delivered += bool(result.delivered)
            if delivered in checkpoints:
                figures["rss_peak"][delivered] = (_status("VmHWM") or 0) - rss_base
                if tracing:
                    peak = tracemalloc.get_traced_memory()[1] - traced_base
                    figures["traced_peak"][delivered] = peak
                    # What is still held, garbage aside: a leak shows here.
                    gc.collect()
                    live = tracemalloc.get_traced_memory()[0] - traced_base
                    figures["traced_live"][delivered] = live
        figures["seconds"] = time.perf_counter() - start
    if delivered != messages:
        raise RuntimeError(f"delivered {delivered} of {messages} messages")
    figures["delivered"] = delivered
    return figures


def run_bulk_memory(
    host: str,
    port: int,
    sessions: int,
    messages: int,
    checkpoints: list[int],
    trace: bool,
) -> dict[str, Any]:
    import smtpc.pool  # noqa: F401 - imported before any measurement

    if trace:
        tracemalloc.start()
    try:
        return asyncio.run(_bulk(host, port, sessions, messages, checkpoints))
    finally:
        if trace:
            tracemalloc.stop()


class _WireWatch(logging.Handler):
    """Sees, through smtpc's wire log, whether a BDAT command went out."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bdat = False
        self.logger = logging.getLogger("smtpc.wire")

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("> BDAT "):
            self.bdat = True

    def start(self) -> None:
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)

    def stop(self) -> bool:
        self.logger.removeHandler(self)
        self.logger.setLevel(logging.NOTSET)
        return self.bdat


def run_extensions(
    client: str,
    host: str,
    port: int,
    messages: int,
    path: str | None,
    to: list[str],
    options: dict[str, bool],
) -> dict[str, Any]:
    """Seconds to send ``messages`` messages over one session."""
    module: Any = __import__(client)
    small = small_message()
    start = time.perf_counter()
    session = module.SMTP(host, port, local_hostname=LOCAL_NAME, timeout=120, **options)
    session.ehlo()
    wire = _WireWatch() if client == "smtpc" else None
    for n in range(messages):
        if wire is not None and n == messages - 1:
            # The last message only: logging costs time.
            wire.start()
        if path is None:
            session.sendmail(FROM, to, small)
            continue
        with open(path, "rb") as file:
            # smtplib takes only str or bytes: the whole file.
            session.sendmail(FROM, to, file if client == "smtpc" else file.read())
    used_bdat = wire is not None and wire.stop()
    features = sorted(session.esmtp_features)
    session.quit()
    return {
        "seconds": time.perf_counter() - start,
        "bdat": used_bdat,
        "features": features,
    }


def main() -> None:
    serve({"bulk-memory": run_bulk_memory, "extensions": run_extensions})


if __name__ == "__main__":
    # Run from anywhere: smtpc comes from the checkout this file lives in.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
