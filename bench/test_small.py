"""Small messages: 2 KB messages per second against Postfix's smtp-sink.

Clients: smtpc's blocking client (both cores; ``sendmail`` a message, and
``deliver_many`` with every message of a session in one call), its asyncio
client (``sendmail`` a message, and ``deliver_many``), its pool with bulk
sender (pipelined batches), smtplib, aiosmtplib, and Postfix's C client
``smtp-source``, all in the same run, taking turns. Python clients time
themselves from the first connect to the last QUIT, in a child process;
``smtp-source`` is timed from outside, for N and for N/10 messages, and the
difference is used, so that its start-up is not counted.

Three settings:
  one CPU       client and smtp-sink pinned to CPU 0: the CPU cost per message.
  two CPUs      smtp-sink on CPU 1, the client on CPU 0: each round trip
                waits for the other side to wake up, so round trips count.
  10 sessions   10 sessions at once (threads for the blocking clients,
                tasks for the asyncio ones, ``smtp-source -s 10``), unpinned.

Round trips per message are counted by a relay between client and sink: a
round trip is the client sending, then the server answering.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    HOST,
    SMTP_SOURCE,
    Sink,
    pinned,
    record,
    run_worker,
    take_turns,
)
from servers import TurnCounter

MESSAGES = 2000
ROUNDS = 3
# smtp-source adds about 100 octets of headers to its body.
SOURCE_BODY = 1940

SETTINGS = {
    # name: (sink CPU, client CPU, sessions)
    "one CPU": (0, 0, 1),
    "two CPUs": (1, 0, 1),
    "10 sessions": (None, None, 10),
}
# (client, core)
PYTHON_CLIENTS = [
    ("smtpc", "c"),
    ("smtpc", "py"),
    ("smtpc-many", "c"),
    ("smtpc-aio", "c"),
    ("smtpc-aio-many", "c"),
    ("smtpc-pool", "c"),
    ("smtplib", "c"),
    ("aiosmtplib", "c"),
]


def _label(client: str, core: str) -> str:
    return f"{client} ({core})" if client.startswith("smtpc") else client


def _python_client(
    client: str, core: str, sink: Sink, cpu: int | None, sessions: int
) -> Callable[[], float]:
    def run() -> float:
        args = {
            "client": client,
            "host": sink.host,
            "port": sink.port,
            "messages": MESSAGES,
            "sessions": sessions,
        }
        return float(run_worker("small", args, core=core, cpu=cpu)["seconds"])

    return run


def _smtp_source(port: int, messages: int, sessions: int, cpu: int | None) -> float:
    command = [str(SMTP_SOURCE), "-l", str(SOURCE_BODY), "-m", str(messages)]
    # -d: keep the session for the next message, as the other clients do.
    command += ["-d", "-s", str(sessions), f"{HOST}:{port}"]
    start = time.perf_counter()
    subprocess.run(
        pinned(command, cpu), check=True, timeout=300, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def _smtp_source_client(
    sink: Sink, cpu: int | None, sessions: int
) -> Callable[[], float]:
    def run() -> float:
        full = _smtp_source(sink.port, MESSAGES, sessions, cpu)
        tenth = _smtp_source(sink.port, MESSAGES // 10, sessions, cpu)
        # Seconds for MESSAGES messages, start-up excluded.
        return (full - tenth) * MESSAGES / (MESSAGES - MESSAGES // 10)

    return run


def measure(start_sink: Callable[..., Sink], setting: str) -> dict[str, float]:
    sink_cpu, client_cpu, sessions = SETTINGS[setting]
    sink = start_sink(sink_cpu)
    candidates = {
        _label(client, core): _python_client(client, core, sink, client_cpu, sessions)
        for client, core in PYTHON_CLIENTS
    }
    if SMTP_SOURCE.exists():
        candidates["smtp-source"] = _smtp_source_client(sink, client_cpu, sessions)
    samples = take_turns(candidates, ROUNDS)
    # The best of the rounds: other work on a shared machine only ever slows
    # a run down, and these runs take a fraction of a second.
    rates = {name: MESSAGES / min(s) for name, s in samples.items()}
    record(
        f"2 KB messages, {setting}",
        messages_per_s={k: round(v) for k, v in rates.items()},
        times_smtplib={k: round(v / rates["smtplib"], 2) for k, v in rates.items()},
    )
    return rates


def _best_smtpc(rates: dict[str, float]) -> float:
    """The rate of smtpc's fastest client: the design targets are the library's."""
    return max(v for k, v in rates.items() if k.startswith("smtpc"))


@pytest.fixture(scope="module")
def one_cpu(start_sink: Callable[..., Sink]) -> dict[str, float]:
    return measure(start_sink, "one CPU")


@pytest.fixture(scope="module")
def two_cpus(start_sink: Callable[..., Sink]) -> dict[str, float]:
    return measure(start_sink, "two CPUs")


@pytest.fixture(scope="module")
def ten_sessions(start_sink: Callable[..., Sink]) -> dict[str, float]:
    return measure(start_sink, "10 sessions")


# --- round trips -----------------------------------------------------------------


def _turns(
    sink: Sink, client: str, core: str, messages: int, resets: dict[str, int]
) -> int:
    counter = TurnCounter((sink.host, sink.port))
    try:
        if client == "smtp-source":
            _smtp_source(counter.port, messages, 1, None)
        else:
            args = {
                "client": client,
                "host": HOST,
                "port": counter.port,
                "messages": messages,
                "sessions": 1,
            }
            run_worker("small", args, core=core)
    finally:
        counter.close()
    if counter.resets:
        resets[client] = resets.get(client, 0) + counter.resets
    return counter.turns


@pytest.fixture(scope="module")
def round_trips(start_sink: Callable[..., Sink]) -> dict[str, float]:
    """Round trips per message, session set-up and QUIT excluded."""
    sink = start_sink(None)
    clients = [c for c in PYTHON_CLIENTS if c[1] == "c"]
    if SMTP_SOURCE.exists():
        clients.append(("smtp-source", "c"))
    per_message = {}
    resets: dict[str, int] = {}
    for client, core in clients:
        few = _turns(sink, client, core, 10, resets)
        more = _turns(sink, client, core, 30, resets)
        per_message[_label(client, core)] = (more - few) / 20
    record("2 KB messages, round trips per message", round_trips=per_message)
    if resets:
        record("2 KB messages, round trips per message", sessions_reset=resets)
    return per_message


# --- tests -------------------------------------------------------------------------


def test_small_messages_timing(benchmark: Any, start_sink: Callable[..., Sink]) -> None:
    """pytest-benchmark's timing of smtpc sending 2000 messages (child process)."""
    sink = start_sink(None)
    run = _python_client("smtpc", "c", sink, None, 1)
    benchmark.pedantic(run, rounds=2, iterations=1)


def test_one_cpu_beats_smtplib(one_cpu: dict[str, float]) -> None:
    """Budget, one CPU, where CPU and not round trips counts: deliver_many
    at 1.2x smtplib or more (measured 1.36-1.48x); sendmail, a message at a
    time, within 15 % of smtplib (0.90-1.11x: about the same CPU a
    message)."""
    assert one_cpu["smtpc-many (c)"] >= 1.2 * one_cpu["smtplib"]
    assert one_cpu["smtpc (c)"] >= 0.85 * one_cpu["smtplib"]


def test_one_cpu_near_smtp_source(one_cpu: dict[str, float]) -> None:
    """Budget: the best smtpc client at 0.85x smtp-source's rate or more,
    one session, one CPU (measured 0.93-1.4x from run to run)."""
    if "smtp-source" not in one_cpu:
        pytest.skip("smtp-source is not installed")
    assert _best_smtpc(one_cpu) >= 0.85 * one_cpu["smtp-source"]


def test_two_cpus_beats_smtplib(two_cpus: dict[str, float]) -> None:
    assert two_cpus["smtpc (c)"] >= 1.1 * two_cpus["smtplib"]


def test_two_cpus_twice_smtplib(two_cpus: dict[str, float]) -> None:
    """Budget: 2x smtplib when round trips dominate.

    deliver_many takes one round trip a message against smtplib's four; it
    measured 2.1-3.7x smtplib from run to run, its time per message swinging
    between two modes.
    """
    assert _best_smtpc(two_cpus) >= 2 * two_cpus["smtplib"]


def test_ten_sessions_near_smtp_source(ten_sessions: dict[str, float]) -> None:
    """Budget: over 10 sessions, the best smtpc client (the asyncio
    deliver_many, a task a session) at 0.75x smtp-source's rate or more.

    Measured 0.80-1.02x in six runs, most of the swing smtp-source's own:
    it runs at 18,000 to 21,000 messages/s here depending on where the
    scheduler puts it and the sink. smtpc takes one round trip a
    message and smtp-source four, but each client is one process beside
    smtp-sink, and smtpc's needs 55-60 us of CPU a message, about half of it
    the engine's Python, where smtp-source's C loop needs about half that.
    """
    if "smtp-source" not in ten_sessions:
        pytest.skip("smtp-source is not installed")
    assert _best_smtpc(ten_sessions) >= 0.75 * ten_sessions["smtp-source"]


def test_pipelining_saves_round_trips(round_trips: dict[str, float]) -> None:
    # smtplib waits after MAIL, RCPT, DATA and the content: 4 a message.
    assert round_trips["smtplib"] == pytest.approx(4, abs=0.2)
    assert round_trips["smtpc (c)"] <= 2.2
    assert round_trips["smtpc-aio (c)"] <= 2.2


def test_deliver_many_one_round_trip(round_trips: dict[str, float]) -> None:
    # Each end of content goes with the next MAIL, RCPT and DATA: with
    # either client, and from the pool, whose sessions send in batches.
    assert round_trips["smtpc-many (c)"] <= 1.2
    assert round_trips["smtpc-aio-many (c)"] <= 1.2
    assert round_trips["smtpc-pool (c)"] <= 1.2
