"""DataEncoder.encode throughput in MB/s, outside pytest, for comparing builds.

Run as ``PYTHONPATH=. python bench/encode_speed.py [rounds]``; prints one
JSON object. The message content and the 64 KiB chunks are those of
bench/test_encoder.py (10 MiB of text, mixed line endings, 2 % of lines
starting with a dot); the figure is the median of ``rounds`` runs.
ci/arm64.sh runs it under emulation, where only the ratio between two builds
measured on the same machine means anything.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time

from test_encoder import CHUNK, typical_text

from smtpc import core


def encode_seconds(data: bytes) -> float:
    """Seconds to dot-stuff ``data`` in CHUNK-sized pieces, then finish()."""
    view = memoryview(data)
    encoder = core.DataEncoder()
    started = time.perf_counter()
    for i in range(0, len(view), CHUNK):
        encoder.encode(view[i : i + CHUNK])
    encoder.finish()
    return time.perf_counter() - started


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    data = typical_text()
    seconds = statistics.median(encode_seconds(data) for _ in range(rounds))
    result = {
        "machine": platform.machine(),
        "core": core.IMPLEMENTATION,
        "octets": len(data),
        "rounds": rounds,
        "mb_per_s": round(len(data) / seconds / 1e6, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
