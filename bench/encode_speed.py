"""How fast DataEncoder.encode dot-stuffs 10 MB of text, in MB/s.

Run with ``python bench/encode_speed.py [repeat]``; prints one JSON object.
The message content is plain text lines, one in 20 starting with a dot. The
figure is the best of ``repeat`` runs of one encode call on all 10 MB, then
finish(). ci/arm64.sh runs it under emulation, where only ratios between
builds on the same machine mean anything.
"""

from __future__ import annotations

import json
import platform
import sys
import time

from smtpc import core

SIZE = 10_000_000


def message_content(size: int = SIZE) -> bytes:
    """Text lines of 20 to 78 octets, every 20th starting with a dot."""
    lines = []
    total = 0
    i = 0
    while total < size:
        width = 20 + (i * 37) % 59
        line = (b"." if i % 20 == 0 else b"") + b"x" * width + b"\r\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)[:size]


def encode_speed(data: bytes, repeat: int) -> float:
    """Best MB/s of ``repeat`` encodes of ``data``."""
    best = float("inf")
    for _ in range(repeat):
        encoder = core.DataEncoder()
        started = time.perf_counter()
        encoder.encode(data)
        encoder.finish()
        best = min(best, time.perf_counter() - started)
    return len(data) / best / 1e6


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    result = {
        "machine": platform.machine(),
        "core": core.IMPLEMENTATION,
        "size": SIZE,
        "repeat": repeat,
        "mb_per_s": round(encode_speed(message_content(), repeat), 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
