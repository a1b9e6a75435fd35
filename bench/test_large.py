"""Large messages from a file: wall time and peak memory, 1, 10 and 100 MB.

Each client runs in a child process of its own and sends one message read
from a file to smtp-sink. smtpc streams the open file; smtplib and aiosmtplib
take only str or bytes, so their callers read the file whole, and that read
is counted. ``read`` is the limit: reading the file in 64 KiB chunks and
sending nothing.

Memory is the peak resident set over the one just before the file is opened
(Linux's VmHWM, reset through /proc/self/clear_refs; elsewhere the growth of
ru_maxrss), and separately tracemalloc's peak for Python allocations (at 1 and
10 MB: tracing slows a streaming client down too much at 100 MB).

Two files: text with LF line endings, as messages are stored on Unix, which
needs every line ending rewritten, and the same text with CRLF.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Sink, median, record, run_worker

MB = 2**20
SIZES = (1, 10, 100)
TRACED_SIZES = (1, 10)
ROUNDS = 2
MIB = 2**20
CLIENTS = [
    ("read", "c"),
    ("smtpc", "c"),
    ("smtpc", "py"),
    ("smtplib", "c"),
    ("aiosmtplib", "c"),
]
WORDS = b"the quick brown fox jumps over a lazy dog mail server message header".split()


def _label(client: str, core: str) -> str:
    return f"{client} ({core})" if client.startswith("smtpc") else client


def write_message(path: Path, size: int, eol: bytes) -> None:
    rnd = random.Random(size)
    lines = [b"From: <a@client.example>", b"To: <b@server.example>", b"", b""]
    for _ in range(20000):
        line = b" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 12)))
        lines.append(b"." + line if rnd.random() < 0.01 else line)
    block = eol.join(lines) + eol
    with path.open("wb") as file:
        left = size
        while left > 0:
            piece = block[:left]
            file.write(piece)
            left -= len(piece)


@pytest.fixture(scope="module")
def messages(scratch: Path) -> dict[tuple[str, int], Path]:
    files = {}
    for name, eol in (("LF", b"\n"), ("CRLF", b"\r\n")):
        for size in SIZES:
            path = scratch / f"message-{size}mb-{name}.eml"
            write_message(path, size * MB, eol)
            files[name, size] = path
    return files


def _client(
    client: str, core: str, sink: Sink, path: Path, trace: bool
) -> Callable[[], Any]:
    args = {
        "client": client,
        "host": sink.host,
        "port": sink.port,
        "path": str(path),
        "trace": trace,
    }
    return lambda: run_worker("large", args, core=core)


def measure(sink: Sink, files: dict[tuple[str, int], Path], eol: str) -> dict[str, Any]:
    seconds: dict[str, dict[int, float]] = {}
    peak: dict[str, dict[int, int]] = {}
    traced: dict[str, dict[int, int]] = {}
    for size in SIZES:
        path = files[eol, size]
        runs: dict[str, list[Any]] = {}
        candidates = {
            _label(c, core): _client(c, core, sink, path, False) for c, core in CLIENTS
        }
        names = list(candidates)
        for r in range(ROUNDS):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                runs.setdefault(name, []).append(candidates[name]())
        for name, results in runs.items():
            seconds.setdefault(name, {})[size] = median([x["seconds"] for x in results])
            peak.setdefault(name, {})[size] = max(x["peak"] for x in results)
        if size in TRACED_SIZES:
            for c, core in CLIENTS:
                result = _client(c, core, sink, path, True)()
                traced.setdefault(_label(c, core), {})[size] = result["peak"]
    smtplib = seconds["smtplib"]
    record(
        f"large message from a file, {eol}",
        seconds={
            k: {f"{s} MB": round(t, 4) for s, t in v.items()}
            for k, v in seconds.items()
        },
        time_over_smtplib={
            k: {f"{s} MB": round(t / smtplib[s], 3) for s, t in v.items()}
            for k, v in seconds.items()
        },
        peak_rss_kib={
            k: {f"{s} MB": v // 1024 for s, v in p.items()} for k, p in peak.items()
        },
        tracemalloc_peak_kib={
            k: {f"{s} MB": v // 1024 for s, v in p.items()} for k, p in traced.items()
        },
    )
    return {"seconds": seconds, "peak": peak, "traced": traced}


@pytest.fixture(scope="module")
def lf(start_sink: Callable[..., Sink], messages: dict[tuple[str, int], Path]) -> Any:
    return measure(start_sink(None), messages, "LF")


@pytest.fixture(scope="module")
def crlf(start_sink: Callable[..., Sink], messages: dict[tuple[str, int], Path]) -> Any:
    return measure(start_sink(None), messages, "CRLF")


def test_large_message_timing(
    benchmark: Any, start_sink: Callable[..., Sink], messages: Any
) -> None:
    """pytest-benchmark's timing of smtpc sending the 10 MB LF file (child process)."""
    run = _client("smtpc", "c", start_sink(None), messages["LF", 10], False)
    benchmark.pedantic(run, rounds=2, iterations=1)


@pytest.mark.parametrize("core", ["c", "py"])
@pytest.mark.parametrize("eol", ["LF", "CRLF"])
def test_peak_memory_flat(lf: Any, crlf: Any, eol: str, core: str) -> None:
    """Budget: sending 100 MB adds at most 1 MiB to peak memory, at any size."""
    figures = {"LF": lf, "CRLF": crlf}[eol]
    for size in SIZES:
        assert figures["peak"][f"smtpc ({core})"][size] <= MIB, f"{size} MB"
    for size in TRACED_SIZES:
        assert figures["traced"][f"smtpc ({core})"][size] <= MIB, f"{size} MB"


def test_smtplib_holds_copies(lf: Any) -> None:
    # The comparison is only meaningful if the peers' cost is visible.
    assert lf["peak"]["smtplib"][100] >= 100 * MB


def test_crlf_faster_than_smtplib(crlf: Any) -> None:
    # Measured about 2.5x at 10 and 100 MB.
    for size in (10, 100):
        ratio = crlf["seconds"]["smtplib"][size] / crlf["seconds"]["smtpc (c)"][size]
        assert ratio >= 1.5, f"{size} MB: {ratio:.2f}x"


@pytest.mark.xfail(
    strict=True,
    reason="LF text is about 0.3-0.4 of smtplib's time, as CRLF text is; the "
    "rest is the sink and the kernel copying the message over loopback, "
    "which both pay",
)
def test_lf_quarter_of_smtplib_time(lf: Any) -> None:
    """design target: at most 1/4 of smtplib's wall time."""
    for size in (10, 100):
        ratio = lf["seconds"]["smtpc (c)"][size] / lf["seconds"]["smtplib"][size]
        assert ratio <= 0.25, f"{size} MB: {ratio:.2f} of smtplib's time"


@pytest.mark.xfail(
    strict=True,
    reason="CRLF text is about 0.3-0.4 of smtplib's time; the rest is the sink "
    "and the kernel copying 100 MB over loopback, which both pay",
)
def test_crlf_quarter_of_smtplib_time(crlf: Any) -> None:
    """design target: at most 1/4 of smtplib's wall time."""
    for size in (10, 100):
        ratio = crlf["seconds"]["smtpc (c)"][size] / crlf["seconds"]["smtplib"][size]
        assert ratio <= 0.25, f"{size} MB: {ratio:.2f} of smtplib's time"
