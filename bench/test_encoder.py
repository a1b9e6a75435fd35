"""Encoder throughput: dot-stuffing and line endings, MB/s, against smtplib and memcpy.

10 MB of text like a message body: lines of 0 to 76 characters, 2 % of them
starting with ".", two thirds ending in CRLF, the rest in a bare LF or a bare
CR. smtplib's work for the same data is its two regular expressions
(``_fix_eols`` then ``_quote_periods``), applied to bytes; the limit is one
copy of the data into a buffer allocated beforehand (a memcpy, with no page
faults on fresh memory, which make a fresh copy's speed swing tenfold here).
"""

from __future__ import annotations

import importlib
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import median, record, take_turns

SIZE = 10 * 2**20
CHUNK = 64 * 1024  # what smtpc reads from a file at a time
ROUNDS = 5
WORDS = b"the quick brown fox jumps over a lazy dog mail server message header".split()


def typical_text(size: int = SIZE, seed: int = 5321) -> bytes:
    rnd = random.Random(seed)
    endings = [b"\r\n"] * 8 + [b"\n"] * 3 + [b"\r"]
    lines, total = [], 0
    while total < size:
        line = b" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(0, 14)))[:76]
        if rnd.random() < 0.02:
            line = b"." + line
        line += rnd.choice(endings)
        lines.append(line)
        total += len(line)
    return b"".join(lines)[:size]


def _timed(work: Callable[[], Any]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    return run


def _encoder(core: Any, data: bytes) -> Callable[[], None]:
    view = memoryview(data)

    def encode() -> None:
        encoder = core.DataEncoder()
        for i in range(0, len(view), CHUNK):
            encoder.encode(view[i : i + CHUNK])
        encoder.finish()

    return encode


def _emitter(core: Any, data: bytes) -> Callable[[], None]:
    # The client's path: dot-stuffed through the fixed buffer to a sink that
    # takes the pieces and sends nothing.
    view = memoryview(data)

    def emit() -> None:
        emitter = core.Emitter(lambda pieces: None)
        emitter.begin_data()
        for i in range(0, len(view), CHUNK):
            emitter.write_data(view[i : i + CHUNK])
        emitter.end_data()
        emitter.flush()

    return emit


_EOLS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
_PERIODS = re.compile(rb"(?m)^\.")


def _smtplib(data: bytes) -> Callable[[], None]:
    def quote() -> None:
        _PERIODS.sub(b"..", _EOLS.sub(b"\r\n", data))

    return quote


@pytest.fixture(scope="module")
def text() -> bytes:
    return typical_text()


@pytest.fixture(scope="module")
def throughput(text: bytes) -> dict[str, float]:
    """MB/s of every candidate, medians over rounds taken in turns."""
    c = importlib.import_module("smtpc._core")
    py = importlib.import_module("smtpc._core_py")
    # The Python candidates are slow: fewer rounds keep the module short.
    target = bytearray(len(text))

    def memcopy() -> None:
        target[:] = text

    candidates = {
        "memcopy": _timed(memcopy),
        "smtpc c encoder": _timed(_encoder(c, text)),
        "smtpc c emitter": _timed(_emitter(c, text)),
        "smtpc py encoder": _timed(_encoder(py, text)),
        "smtpc py emitter": _timed(_emitter(py, text)),
        "smtplib": _timed(_smtplib(text)),
    }
    samples = take_turns(candidates, ROUNDS)
    mbps = {name: len(text) / 1e6 / median(s) for name, s in samples.items()}
    ratios = {name: mbps[name] / mbps["smtplib"] for name in mbps}
    record(
        "encoder, 10 MB mixed line endings",
        mb_per_s={k: round(v, 1) for k, v in mbps.items()},
        times_smtplib={k: round(v, 2) for k, v in ratios.items()},
        share_of_memcopy={k: round(v / mbps["memcopy"], 4) for k, v in mbps.items()},
    )
    return mbps


def test_encoder_speed(benchmark: Any, core_impl: str, text: bytes) -> None:
    """pytest-benchmark's own timing of the data encoder on 10 MB."""
    core = importlib.import_module(
        {"c": "smtpc._core", "py": "smtpc._core_py"}[core_impl]
    )
    benchmark.extra_info["MB"] = len(text) / 1e6
    benchmark.pedantic(_encoder(core, text), rounds=3, iterations=1)


# Margins set from measured ratios (compiled encoder and emitter 33-45x, twin
# 2.1-2.4x smtplib), with room for a noisy machine.
MARGINS = {
    ("c", "encoder"): 20.0,
    ("c", "emitter"): 20.0,
    ("py", "encoder"): 1.5,
    ("py", "emitter"): 1.5,
}


@pytest.mark.parametrize("path", ["encoder", "emitter"])
def test_encoder_beats_smtplib(
    throughput: dict[str, float], core_impl: str, path: str
) -> None:
    ratio = throughput[f"smtpc {core_impl} {path}"] / throughput["smtplib"]
    assert ratio >= MARGINS[core_impl, path], f"{ratio:.2f}x smtplib"


def test_encoder_third_of_memcopy(throughput: dict[str, float]) -> None:
    """Budget: the compiled encoder runs at 1/3 of a memory copy or more."""
    share = throughput["smtpc c encoder"] / throughput["memcopy"]
    assert share >= 1 / 3, f"{share:.3f} of a memory copy"
