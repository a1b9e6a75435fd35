"""Fuzz the data encoder: for any message bytes cut anywhere, the compiled
core and the pure-Python twin give the same DATA section, which ends with
the only end-of-data sequence and holds no bare CR or LF.

    python bench/fuzz/fuzz_encoder.py -max_total_time=300 -rss_limit_mb=512

Needs atheris (``pip install atheris``) and the compiled core.
"""

import sys

import atheris

with atheris.instrument_imports():
    from smtpc import _core, _core_py


def _into(sent: bytearray):
    return lambda pieces: sent.extend(b"".join(pieces))


def sections(data: bytes, cuts: list[int], size: int) -> list[bytes]:
    out = []
    spans = list(zip(cuts, cuts[1:], strict=False))
    for core in (_core, _core_py):
        encoder = core.DataEncoder()
        text = b"".join(encoder.encode(data[a:b]) for a, b in spans)
        text += encoder.finish()
        sent = bytearray()
        emitter = core.Emitter(_into(sent), size)
        emitter.begin_data()
        for a, b in spans:
            emitter.write_data(data[a:b])
        emitter.end_data()
        emitter.flush()
        assert bytes(sent) == text
        out.append(text)
    return out


def one_input(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    size = fdp.ConsumeIntInRange(64, 1024)
    step = fdp.ConsumeIntInRange(1, 300)
    data = fdp.ConsumeBytes(fdp.remaining_bytes())
    cuts = list(range(0, len(data), step)) + [len(data)]
    compiled, twin = sections(data, cuts, size)
    assert compiled == twin
    section = b"\r\n" + compiled
    assert section.find(b"\r\n.\r\n") == len(section) - 5
    bare = section.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
