"""One client's side of a benchmark, run in a child process of its own.

Usage: ``python bench/_worker.py TASK JSON`` prints one JSON object. Each run
starts a fresh interpreter, so that one client's memory and caches never
count for another, and ``SMTPC_NO_EXTENSIONS=1`` picks smtpc's Python core.

Tasks:
  small  send ``messages`` 2 KB messages over ``sessions`` sessions; the time
         counts from the first connect to the last QUIT. ``smtpc-many`` is
         smtpc's blocking client with ``deliver_many``, one call a session
         (a thread each); ``smtpc-aio-many`` the asyncio client's
         ``deliver_many``, one call a session (a task each);
         ``smtpc-pool`` a ``Pool`` of ``sessions`` sessions with a
         ``BulkSender`` (pipelined batches, by default).
  large  send the file at ``path`` as one message; the time counts from
         opening the file to the final reply; memory is the peak resident
         set over the one before opening it (``trace``: tracemalloc's peak
         instead, Python allocations only).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

FROM = "bench@client.example"
TO = ["sink@server.example"]
LOCAL_NAME = "client.example"
MESSAGE_SIZE = 2048
CHUNK = 64 * 1024


def small_message(size: int = MESSAGE_SIZE) -> bytes:
    """A message of ``size`` octets: a few headers and lines of text."""
    head = (
        f"From: <{FROM}>\r\nTo: <{TO[0]}>\r\nSubject: benchmark\r\n"
        "Message-ID: <bench@client.example>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    text = head + body[: size - len(head) - 2]
    return text + b"\r\n"


# -- memory probes ------------------------------------------------------------


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    # Linux: writing 5 to clear_refs sets the peak resident set (VmHWM) to
    # the current one.
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _maxrss() -> int:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Peak memory of a block over the moment it starts."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.peak = 0
        self.method = ""

    def __enter__(self) -> PeakMemory:
        if self.trace:
            tracemalloc.start()
            self._base = tracemalloc.get_traced_memory()[0]
            self.method = "tracemalloc"
        elif _reset_peak():
            self._base = _status("VmRSS") or 0
            self.method = "VmHWM"
        else:
            self._base = _maxrss()
            self.method = "ru_maxrss"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.trace:
            self.peak = tracemalloc.get_traced_memory()[1] - self._base
            tracemalloc.stop()
        elif self.method == "VmHWM":
            self.peak = (_status("VmHWM") or 0) - self._base
        else:
            self.peak = _maxrss() - self._base


# -- clients ------------------------------------------------------------------


def _blocking(module: Any) -> Callable[[str, int], Any]:
    def connect(host: str, port: int) -> Any:
        client = module.SMTP(host, port, local_hostname=LOCAL_NAME, timeout=60)
        client.ehlo()
        return client

    return connect


def _blocking_run(module: Any, host: str, port: int, count: int, msg: bytes) -> None:
    client = _blocking(module)(host, port)
    for _ in range(count):
        client.sendmail(FROM, TO, msg)
    client.quit()


def _smtpc_many_run(host: str, port: int, count: int, msg: bytes) -> None:
    import smtpc

    client = _blocking(smtpc)(host, port)
    results = client.deliver_many((FROM, TO, msg) for _ in range(count))
    client.quit()
    sent = sum(result.delivered for result in results)
    if sent != count:
        raise RuntimeError(f"deliver_many delivered {sent} of {count} messages")


async def _smtpc_aio_run(host: str, port: int, count: int, msg: bytes) -> None:
    from smtpc.aio import SMTP

    client = SMTP(host, port, local_hostname=LOCAL_NAME, timeout=60)
    await client.connect()
    await client.ehlo()
    for _ in range(count):
        await client.sendmail(FROM, TO, msg)
    await client.quit()


async def _smtpc_aio_many_run(host: str, port: int, count: int, msg: bytes) -> None:
    from smtpc.aio import SMTP

    client = SMTP(host, port, local_hostname=LOCAL_NAME, timeout=60)
    await client.connect()
    await client.ehlo()
    results = await client.deliver_many((FROM, TO, msg) for _ in range(count))
    await client.quit()
    sent = sum(result.delivered for result in results)
    if sent != count:
        raise RuntimeError(f"deliver_many delivered {sent} of {count} messages")


async def _aiosmtplib_run(host: str, port: int, count: int, msg: bytes) -> None:
    import aiosmtplib

    client = aiosmtplib.SMTP(
        hostname=host, port=port, local_hostname=LOCAL_NAME, timeout=60
    )
    await client.connect()
    for _ in range(count):
        await client.sendmail(FROM, TO, msg)
    await client.quit()


async def _smtpc_pool_run(host: str, port: int, total: int, sessions: int) -> None:
    from smtpc.pool import BulkSender, Pool

    msg = small_message()
    pool = Pool(
        host,
        port,
        size=sessions,
        max_messages=total + 1,
        local_hostname=LOCAL_NAME,
        timeout=60,
    )
    async with pool:
        sender = BulkSender(pool, max_attempts=1)
        sent = 0
        async for result in sender.send((FROM, TO, msg) for _ in range(total)):
            if result.delivered:
                sent += 1
    if sent != total:
        raise RuntimeError(f"the pool delivered {sent} of {total} messages")


def _split(total: int, sessions: int) -> list[int]:
    return [total // sessions + (i < total % sessions) for i in range(sessions)]


def run_small(client: str, host: str, port: int, messages: int, sessions: int) -> float:
    """Seconds to send ``messages`` messages over ``sessions`` sessions."""
    msg = small_message()
    counts = _split(messages, sessions)
    if client in ("smtpc", "smtplib", "smtpc-many"):
        module = __import__("smtpc" if client == "smtpc-many" else client)
        if client == "smtpc-many":
            run_one: Callable[..., None] = _smtpc_many_run
            first: tuple[Any, ...] = ()
        else:
            run_one, first = _blocking_run, (module,)
        start = time.perf_counter()
        if sessions == 1:
            run_one(*first, host, port, messages, msg)
        else:
            threads = [
                threading.Thread(target=run_one, args=(*first, host, port, n, msg))
                for n in counts
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return time.perf_counter() - start
    if client == "smtpc-pool":
        import smtpc.pool  # noqa: F401 - imported before the clock starts

        start = time.perf_counter()
        asyncio.run(_smtpc_pool_run(host, port, messages, sessions))
        return time.perf_counter() - start
    if client == "smtpc-aio":
        import smtpc.aio  # noqa: F401

        run = _smtpc_aio_run
    elif client == "smtpc-aio-many":
        import smtpc.aio  # noqa: F401

        run = _smtpc_aio_many_run
    elif client == "aiosmtplib":
        import aiosmtplib  # noqa: F401

        run = _aiosmtplib_run
    else:
        raise ValueError(f"unknown client {client!r}")

    async def main() -> None:
        await asyncio.gather(*(run(host, port, n, msg) for n in counts))

    start = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - start


def run_large(
    client: str, host: str, port: int, path: str, trace: bool
) -> dict[str, Any]:
    """Send the file at ``path`` as one message; time and peak memory."""
    if client == "read":
        # The limit: reading the file in chunks, sending nothing.
        with PeakMemory(trace) as memory:
            start = time.perf_counter()
            with open(path, "rb") as file:
                while file.read(CHUNK):
                    pass
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak": memory.peak, "method": memory.method}
    if client == "wire":
        # The floor for any client: the envelope, then the file as it is, in
        # chunks, through a plain socket. The file must already have CRLF line
        # endings and no line that is a lone "."; the sink does the rest.
        with socket.create_connection((host, port), timeout=120) as sock:
            replies = sock.makefile("rb")

            def reply() -> bytes:
                while (line := replies.readline())[3:4] == b"-":
                    pass
                return line

            reply()
            sock.sendall(f"EHLO {LOCAL_NAME}\r\n".encode())
            reply()
            with PeakMemory(trace) as memory:
                start = time.perf_counter()
                sock.sendall(
                    f"MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO[0]}>\r\nDATA\r\n".encode()
                )
                for _ in range(3):
                    reply()
                last = b"\r\n"
                with open(path, "rb") as file:
                    while chunk := file.read(CHUNK):
                        sock.sendall(chunk)
                        last = chunk
                sock.sendall(b".\r\n" if last.endswith(b"\r\n") else b"\r\n.\r\n")
                if not reply().startswith(b"250"):
                    raise RuntimeError("the sink refused the message")
                seconds = time.perf_counter() - start
            sock.sendall(b"QUIT\r\n")
            reply()
        return {"seconds": seconds, "peak": memory.peak, "method": memory.method}
    if client in ("smtpc", "smtplib"):
        module = __import__(client)
        session = _blocking(module)(host, port)
        with PeakMemory(trace) as memory:
            start = time.perf_counter()
            with open(path, "rb") as file:
                # smtplib takes only str or bytes: the whole file.
                msg = file if client == "smtpc" else file.read()
                session.sendmail(FROM, TO, msg)
            del msg
            seconds = time.perf_counter() - start
        session.quit()
    elif client == "aiosmtplib":
        import aiosmtplib

        async def send() -> tuple[float, PeakMemory]:
            session = aiosmtplib.SMTP(
                hostname=host, port=port, local_hostname=LOCAL_NAME, timeout=120
            )
            await session.connect()
            with PeakMemory(trace) as memory:
                start = time.perf_counter()
                with open(path, "rb") as file:
                    msg = file.read()
                await session.sendmail(FROM, TO, msg)
                del msg
                seconds = time.perf_counter() - start
            await session.quit()
            return seconds, memory

        seconds, memory = asyncio.run(send())
    else:
        raise ValueError(f"unknown client {client!r}")
    return {"seconds": seconds, "peak": memory.peak, "method": memory.method}


def serve(tasks: dict[str, Callable[..., dict[str, Any]]]) -> None:
    """Run the task named on the command line with its JSON arguments, and
    print its result as JSON, with the smtpc core it used."""
    task, args = sys.argv[1], json.loads(sys.argv[2])
    if task not in tasks:
        raise SystemExit(f"unknown task {task!r}")
    result = tasks[task](**args)
    if "smtpc" in sys.modules:
        from smtpc import core

        result["core"] = core.IMPLEMENTATION
    print(json.dumps(result))


def main() -> None:
    serve(
        {
            "small": lambda **args: {"seconds": run_small(**args)},
            "large": run_large,
        }
    )


if __name__ == "__main__":
    # Run from anywhere: smtpc comes from the checkout this file lives in.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
