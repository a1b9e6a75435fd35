"""Bulk sending: messages per second over 1, 10 and 50 sessions, and bounded memory.

Throughput: 2 KB messages to Postfix's smtp-sink on loopback, unpinned, from
smtpc's pool with its bulk sender (``Pool(size=N)`` + ``BulkSender``, sending
pipelined batches), smtpc's asyncio client (N clients under ``asyncio.gather``:
``smtpc-aio`` calls ``sendmail`` a message, ``smtpc-aio-many`` ``deliver_many``
once a session), aiosmtplib (N clients, ``sendmail``), and Postfix's C client
``smtp-source -s N``, all in the same run, taking turns; medians of the rounds.
Python clients time themselves in a child process from the first connect to
the last QUIT; ``smtp-source`` is timed for N and N/10 messages and the
difference used, so that its start-up is not counted.

Memory: a BulkSender over 10 sessions fed distinct 2 KB messages from a
generator. After a warm-up of 500 messages, the peak resident set over the one
at that point (Linux's VmHWM, reset through /proc/self/clear_refs) and, in a
second run with tracing on, tracemalloc's peak and what stays allocated after
a garbage collection are read after 10,000 and after 100,000 messages: the
sender reads at most ``2 * size`` messages ahead, so memory may not grow with
the number of messages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SMTP_SOURCE, Sink, median, record, run_worker, take_turns
from test_small import _smtp_source

BULK_WORKER = Path(__file__).resolve().parent / "_bulk_worker.py"
MESSAGES = 2000
ROUNDS = 3
SESSIONS = (1, 10, 50)
CLIENTS = ("smtpc-pool", "smtpc-aio", "smtpc-aio-many", "aiosmtplib")
KIB = 1024
MIB = 2**20
CHECKPOINTS = (10_000, 100_000)


def _python_client(client: str, sink: Sink, sessions: int) -> Callable[[], float]:
    args = {
        "client": client,
        "host": sink.host,
        "port": sink.port,
        "messages": MESSAGES,
        "sessions": sessions,
    }
    return lambda: float(run_worker("small", args)["seconds"])


def _smtp_source_client(sink: Sink, sessions: int) -> Callable[[], float]:
    def run() -> float:
        full = _smtp_source(sink.port, MESSAGES, sessions, None)
        tenth = _smtp_source(sink.port, MESSAGES // 10, sessions, None)
        # Seconds for MESSAGES messages, start-up excluded.
        return (full - tenth) * MESSAGES / (MESSAGES - MESSAGES // 10)

    return run


@pytest.fixture(scope="module")
def throughput(start_sink: Callable[..., Sink]) -> dict[int, dict[str, float]]:
    """sessions -> client -> messages per second."""
    sink = start_sink(None)
    rates: dict[int, dict[str, float]] = {}
    for sessions in SESSIONS:
        candidates = {c: _python_client(c, sink, sessions) for c in CLIENTS}
        if SMTP_SOURCE.exists():
            candidates["smtp-source"] = _smtp_source_client(sink, sessions)
        samples = take_turns(candidates, ROUNDS)
        rates[sessions] = {k: MESSAGES / median(v) for k, v in samples.items()}
    record(
        "bulk, 2 KB messages to smtp-sink",
        messages_per_s={
            f"{n} sessions": {k: round(v) for k, v in r.items()}
            for n, r in rates.items()
        },
        times_aiosmtplib={
            f"{n} sessions": {k: round(v / r["aiosmtplib"], 2) for k, v in r.items()}
            for n, r in rates.items()
        },
    )
    return rates


@pytest.fixture(scope="module")
def bulk_memory(start_sink: Callable[..., Sink]) -> dict[str, dict[int, int]]:
    """``rss`` and ``traced`` peaks in octets, after 10,000 and 100,000 messages."""
    sink = start_sink(None)
    args: dict[str, Any] = {
        "host": sink.host,
        "port": sink.port,
        "sessions": 10,
        "messages": CHECKPOINTS[-1],
        "checkpoints": list(CHECKPOINTS),
    }
    plain = run_worker("bulk-memory", {**args, "trace": False}, script=BULK_WORKER)
    traced = run_worker("bulk-memory", {**args, "trace": True}, script=BULK_WORKER)
    figures = {
        "rss": {int(k): v for k, v in plain["rss_peak"].items()},
        "traced": {int(k): v for k, v in traced["traced_peak"].items()},
        "rss_traced_run": {int(k): v for k, v in traced["rss_peak"].items()},
        "live": {int(k): v for k, v in traced["traced_live"].items()},
    }
    record(
        "bulk sender memory, 10 sessions, messages from a generator",
        peak_rss_over_baseline_kib={
            f"{n:,}": v // KIB for n, v in figures["rss"].items()
        },
        tracemalloc_peak_kib={f"{n:,}": v // KIB for n, v in figures["traced"].items()},
        tracemalloc_live_kib={f"{n:,}": v // KIB for n, v in figures["live"].items()},
        peak_rss_with_tracing_kib={
            f"{n:,}": v // KIB for n, v in figures["rss_traced_run"].items()
        },
        messages_per_s={
            "untraced": round(CHECKPOINTS[-1] / plain["seconds"]),
            "traced": round(CHECKPOINTS[-1] / traced["seconds"]),
        },
    )
    return figures


def test_bulk_timing(benchmark: Any, start_sink: Callable[..., Sink]) -> None:
    """pytest-benchmark's timing of the pool sending 2000 messages over 10 sessions."""
    run = _python_client("smtpc-pool", start_sink(None), 10)
    benchmark.pedantic(run, rounds=2, iterations=1)


@pytest.mark.parametrize("sessions", SESSIONS)
def test_pool_beats_aiosmtplib(
    throughput: dict[int, dict[str, float]], sessions: int
) -> None:
    # Pipelined batches: measured 2.0x to 3.6x (1.2x to 1.3x a message at a
    # time), lowest at 50 sessions; the margin leaves room for noise.
    rates = throughput[sessions]
    assert rates["smtpc-pool"] >= 1.5 * rates["aiosmtplib"]


@pytest.mark.parametrize("sessions", SESSIONS)
def test_aio_beats_aiosmtplib(
    throughput: dict[int, dict[str, float]], sessions: int
) -> None:
    rates = throughput[sessions]
    assert rates["smtpc-aio"] >= 1.05 * rates["aiosmtplib"]


@pytest.mark.xfail(
    # Two runs, pool + BulkSender against smtp-source, messages/s: 10
    # sessions 14,954 and 15,303 against 21,903 and 18,221; 50 sessions
    # 13,220 and 13,445 against 22,217 and 22,284 (0.60-0.84x).
    strict=True,
    reason="0.60-0.84x smtp-source: batches take one round trip a message "
    "now; what is left is CPU. One Python process on one event loop spends "
    "about 60 us a message (engine steps and reply objects, the result per "
    "message) where smtp-source's C loop spends about half, and more "
    "sessions add no CPU",
)
@pytest.mark.parametrize("sessions", (10, 50))
def test_pool_matches_smtp_source(
    throughput: dict[int, dict[str, float]], sessions: int
) -> None:
    """design target for 10 sessions: at least smtp-source's rate."""
    rates = throughput[sessions]
    if "smtp-source" not in rates:
        pytest.skip("smtp-source is not installed")
    assert max(rates["smtpc-pool"], rates["smtpc-aio"]) >= rates["smtp-source"]


def test_bulk_memory_bounded(bulk_memory: dict[str, dict[int, int]]) -> None:
    """Budget: 100,000 messages peak within 1 MiB over the warmed-up process."""
    for kind in ("rss", "traced"):
        for count in CHECKPOINTS:
            assert bulk_memory[kind][count] <= MIB, f"{kind}, {count} messages"


def test_bulk_memory_does_not_grow(bulk_memory: dict[str, dict[int, int]]) -> None:
    # The peaks wander by a few hundred KiB (sessions renewed every 1,000
    # messages, replies in flight at one moment); what stays allocated must
    # not grow: 2 KB a message would be 180 MB more at 100,000.
    few, many = CHECKPOINTS
    assert bulk_memory["live"][many] - bulk_memory["live"][few] <= 64 * KIB
