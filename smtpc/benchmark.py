"""``smtpc bench``: messages per second, smtpc against smtplib, on loopback.

Both clients send the same small messages over one session to a local sink,
taking turns round by round, in this process; the ratio is what to read, as
absolute rates depend on the machine and on what else it is doing. The sink
is Postfix's ``smtp-sink`` when it is installed, else a small sink written
in Python (:mod:`smtpc._sink`) in a child process.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SMTP_SINK", "compare", "format_result", "sink"]

SMTP_SINK = "/usr/sbin/smtp-sink"
_HOST = "127.0.0.1"
_FROM = "bench@client.example"
_TO = ["sink@server.example"]


def _message(size: int) -> bytes:
    head = b"From: <bench@client.example>\r\nSubject: benchmark\r\n\r\n"
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    body = line * (max(size - len(head), 0) // len(line) + 1)
    return head + body[: max(size - len(head) - 2, 0)] + b"\r\n"


def _smtp_sink_path() -> str | None:
    if os.path.exists(SMTP_SINK):
        return SMTP_SINK
    return shutil.which("smtp-sink")


@contextmanager
def sink(kind: str = "auto") -> Iterator[tuple[str, int, str]]:
    """A sink on loopback: yields ``(host, port, name)``.

    Args:
        kind: ``"smtp-sink"``, ``"builtin"`` or ``"auto"`` (smtp-sink when
            installed).

    Raises:
        RuntimeError: smtp-sink was asked for and is missing, or did not
            start listening.
    """
    path = _smtp_sink_path()
    if kind == "builtin" or (kind == "auto" and path is None):
        from ._sink import spawn

        with spawn() as (host, port):
            yield host, port, "built-in sink"
        return
    if path is None:
        raise RuntimeError("smtp-sink is not installed")
    with socket.socket() as probe:
        probe.bind((_HOST, 0))
        port = probe.getsockname()[1]
    # smtp-sink refuses to keep root privileges.
    user = ["-u", "nobody"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    child = subprocess.Popen(
        [path, *user, "-h", "sink.localhost", f"{_HOST}:{port}", "64"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection((_HOST, port), timeout=1).close()
                break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("smtp-sink did not start listening") from None
                time.sleep(0.02)
        yield _HOST, port, "smtp-sink"
    finally:
        child.terminate()
        child.wait(5)


def _send(module: Any, host: str, port: int, count: int, msg: bytes) -> float:
    start = time.perf_counter()
    client = module.SMTP(host, port, local_hostname="client.localhost", timeout=60)
    try:
        client.ehlo()
        for _ in range(count):
            client.sendmail(_FROM, _TO, msg)
        client.quit()
    finally:
        client.close()
    return time.perf_counter() - start


def compare(
    messages: int = 1000, size: int = 2048, rounds: int = 3, kind: str = "auto"
) -> dict[str, Any]:
    """Messages per second of smtpc and smtplib against the same sink.

    Each round sends ``messages`` messages of ``size`` octets over one
    session with each client, their order alternating; the median round
    counts.

    Returns:
        ``sink``, ``messages``, ``size``, ``rounds``, ``core``, the rates
        ``smtpc`` and ``smtplib`` in messages per second, and ``ratio``
        (smtpc's rate over smtplib's).

    Raises:
        ValueError: ``messages``, ``size`` or ``rounds`` below 1.
    """
    if messages < 1 or size < 1 or rounds < 1:
        raise ValueError("messages, size and rounds must be at least 1")
    import smtplib

    import smtpc

    from . import core

    msg = _message(size)
    clients = {"smtpc": smtpc, "smtplib": smtplib}
    times: dict[str, list[float]] = {name: [] for name in clients}
    with sink(kind) as (host, port, name):
        for r in range(rounds):
            order = list(clients) if r % 2 == 0 else list(reversed(clients))
            for client in order:
                times[client].append(_send(clients[client], host, port, messages, msg))
    rates = {k: messages / statistics.median(v) for k, v in times.items()}
    return {
        "sink": name,
        "messages": messages,
        "size": len(msg),
        "rounds": rounds,
        "core": core.IMPLEMENTATION,
        "smtpc": rates["smtpc"],
        "smtplib": rates["smtplib"],
        "ratio": rates["smtpc"] / rates["smtplib"],
    }


def format_result(result: dict[str, Any]) -> str:
    """The comparison as lines of text."""
    return "\n".join(
        [
            f"{result['messages']} messages of {result['size']} octets, one session,"
            f" {result['sink']} on loopback, median of {result['rounds']} rounds",
            f"{'smtpc (' + result['core'] + ' core):':20}"
            f"{result['smtpc']:10.0f} messages/s",
            f"{'smtplib:':20}{result['smtplib']:10.0f} messages/s",
            f"{'ratio:':20}{result['ratio']:10.2f}x smtplib",
        ]
    )
