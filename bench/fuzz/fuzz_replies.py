"""Fuzz the reply reader: any bytes, cut anywhere, give replies or
RemoteProtocolError, never another exception, a hang or unbounded memory.

    python bench/fuzz/fuzz_replies.py -max_total_time=300 -rss_limit_mb=512

Needs atheris (``pip install atheris``); arguments go to libFuzzer.
"""

import sys

import atheris

with atheris.instrument_imports():
    from smtpc.engine.replies import ReplyReader
    from smtpc.errors import RemoteProtocolError

MAX_LINE, MAX_LINES, MAX_SIZE = 512, 16, 4096


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    reader = ReplyReader(max_line=MAX_LINE, max_lines=MAX_LINES, max_size=MAX_SIZE)
    try:
        while fdp.remaining_bytes():
            reader.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)))
            while (reply := reader.next_reply()) is not None:
                assert 200 <= reply.code <= 599, reply
                assert 1 <= len(reply.lines) <= MAX_LINES, reply
            # A partial line never waits beyond the line limit.
            assert reader.pending <= MAX_LINE + MAX_SIZE + 64, reader.pending
    except RemoteProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
