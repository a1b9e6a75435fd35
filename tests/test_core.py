"""The core twins: dot-stuffing, the emitter, command and path checks, base64.

Every test taking ``core_impl`` runs against the compiled ``smtpc._core`` and
the pure-Python ``smtpc._core_py``; the parity tests import both and compare
their outputs and error messages directly.
"""

from __future__ import annotations

import binascii
import inspect
import itertools
import os
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpc import _core_py

NO_EXTENSIONS = os.environ.get("SMTPC_NO_EXTENSIONS") == "1"

# core_impl hands out a module, which holds no state between examples.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# Message content rich in the octets dot-stuffing cares about, with runs long
# enough to cross the encoder's 16-octet blocks and overflow every buffer
# size tested.
TOKENS = [b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" ", b"x" * 40, b"y" * 150]
content = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(TOKENS), max_size=80).map(b"".join),
)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Message content and one way to cut it into chunks, empty ones included."""
    data = draw(content)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def dot_stuffed(data: bytes) -> bytes:
    """What DATA must carry for ``data``, written out line by line."""
    *lines, tail = re.split(rb"\r\n|\r|\n", data)
    if tail:
        lines.append(tail)
    return (
        b"".join(
            (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines
        )
        + b".\r\n"
    )


def encode_all(core: ModuleType, chunks: list[Any]) -> bytes:
    encoder = core.DataEncoder()
    return b"".join([encoder.encode(chunk) for chunk in chunks]) + encoder.finish()


class Recorder:
    """A sink that copies what it is given, as a socket would send it."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []

    def __call__(self, pieces: list[bytes | memoryview]) -> None:
        assert type(pieces) is list
        assert all(isinstance(piece, bytes | memoryview) for piece in pieces)
        self.calls.append([bytes(piece) for piece in pieces])

    @property
    def sent(self) -> bytes:
        return b"".join(b"".join(call) for call in self.calls)


def error_of(call: Callable[[], object]) -> tuple[type[BaseException], str] | None:
    try:
        call()
    except Exception as exc:
        return type(exc), str(exc)
    return None


# --- Selection -------------------------------------------------------------


def test_compiled_core_loaded() -> None:
    from smtpc import core

    if NO_EXTENSIONS:
        assert core.IMPLEMENTATION == "py"
        assert core.Emitter is _core_py.Emitter
    else:
        # Fails, rather than skips, when the extension was not built.
        from smtpc import _core

        assert core.IMPLEMENTATION == "c"
        assert core.Emitter is _core.Emitter


def test_twins_export_the_same_names(core_impl: ModuleType) -> None:
    from smtpc import core

    public = {name for name in dir(core_impl) if not name.startswith("_")}
    if core_impl is not _core_py:
        assert public == set(_core_py.__all__)
    assert set(core.__all__) == {*_core_py.__all__, "IMPLEMENTATION"}
    for name in _core_py.__all__:
        if name.isupper():
            assert getattr(core_impl, name) == getattr(_core_py, name)
    assert core_impl.DEFAULT_BUFFER_SIZE == 256
    assert core_impl.MIN_BUFFER_SIZE == 64
    assert core_impl.MAX_COMMAND_LINE == 512
    assert (core_impl.MAX_LOCAL_PART, core_impl.MAX_DOMAIN) == (64, 255)
    assert core_impl.MAX_PATH == 256


# --- Dot-stuffing (RFC 5321 §4.5.2) ------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([], b".\r\n"),
        ([b""], b".\r\n"),
        ([b"a"], b"a\r\n.\r\n"),
        ([b"a\r\n"], b"a\r\n.\r\n"),
        ([b"a\nb\rc\r\n"], b"a\r\nb\r\nc\r\n.\r\n"),
        ([b".\n"], b"..\r\n.\r\n"),
        ([b".a\r\n..b"], b"..a\r\n...b\r\n.\r\n"),
        ([b"a\r", b"\nb"], b"a\r\nb\r\n.\r\n"),
        ([b"a\r", b"", b"\n.b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"b"], b"a\r\nb\r\n.\r\n"),
        ([b"a\r", b"\r\n"], b"a\r\n\r\n.\r\n"),
        ([b"\r"], b"\r\n.\r\n"),
        ([b"\n\n"], b"\r\n\r\n.\r\n"),
        ([b"a\n", b".", b"b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a.", b"b\r\n.\r\n"], b"a.b\r\n..\r\n.\r\n"),
    ],
)
def test_encode_examples(
    core_impl: ModuleType, chunks: list[bytes], expected: bytes
) -> None:
    assert encode_all(core_impl, chunks) == expected
    assert dot_stuffed(b"".join(chunks)) == expected


@fixture_ok
@given(chunked())
def test_encode_any_split_gives_the_stuffed_content(
    core_impl: ModuleType, case: tuple[bytes, list[bytes]]
) -> None:
    data, chunks = case
    assert encode_all(core_impl, chunks) == dot_stuffed(data)
    assert encode_all(core_impl, [data]) == dot_stuffed(data)


@fixture_ok
@given(chunked())
def test_encode_output_unstuffs_to_the_input(
    core_impl: ModuleType, case: tuple[bytes, list[bytes]]
) -> None:
    data, chunks = case
    out = encode_all(core_impl, chunks)

    assert re.search(rb"\r(?!\n)|(?<!\r)\n", out) is None, "bare CR or LF"
    if not data:
        assert out == b".\r\n"
        return
    assert out.endswith(b"\r\n.\r\n")
    lines = out[: -len(b".\r\n")].split(b"\r\n")[:-1]
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines)
    unstuffed = b"".join(
        (line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines
    )
    normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    assert unstuffed == normalised


@fixture_ok
@given(chunked(), st.sampled_from([bytes, bytearray, memoryview]))
def test_encode_takes_any_bytes_like(
    core_impl: ModuleType, case: tuple[bytes, list[bytes]], kind: type
) -> None:
    data, chunks = case
    assert encode_all(core_impl, [kind(chunk) for chunk in chunks]) == dot_stuffed(data)


def test_encoder_is_reusable_after_finish(core_impl: ModuleType) -> None:
    encoder = core_impl.DataEncoder()
    assert encoder.encode(b"a\r") == b"a\r\n"
    assert encoder.finish() == b".\r\n"
    # A fresh message: the LF is a line of its own, the "." is at a line start.
    assert encoder.encode(b"\n.") == b"\r\n.."
    encoder.reset()
    assert encoder.encode(b".") == b".."
    assert encoder.finish() == b"\r\n.\r\n"


@pytest.mark.parametrize("offset", range(10, 22))
def test_encode_around_block_edges(core_impl: ModuleType, offset: int) -> None:
    # The compiled encoder reads 16 octets at a time: every mix of line
    # endings and dots, on each side of the edges at 16 and 32, whole and cut
    # into chunks across them.
    atoms = [b"\r", b"\n", b"\r\n", b".", b"x"]
    for combo in itertools.product(atoms, repeat=4):
        data = b"a" * offset + b"".join(combo) + b"b" * 12 + b"".join(combo)
        expected = dot_stuffed(data)
        for size in (len(data), 16, 17):
            chunks = [data[i : i + size] for i in range(0, len(data), size)]
            assert encode_all(core_impl, chunks) == expected, (data, size)
        assert (
            encode_all(core_impl, [data[: offset + 1], data[offset + 1 :]]) == expected
        )


def test_encode_large_chunk(core_impl: ModuleType) -> None:
    data = b"".join(b"%s line %d\n" % (b"." * (i % 3), i) for i in range(20000))
    assert encode_all(core_impl, [data]) == dot_stuffed(data)
    assert encode_all(core_impl, [b"\n" * 5000]) == b"\r\n" * 5000 + b".\r\n"


# --- Emitter: message content ------------------------------------------------


@fixture_ok
@given(
    chunked(),
    st.sampled_from([64, 256, 1000]),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_emitter_sends_what_the_encoder_gives(
    core_impl: ModuleType, case: tuple[bytes, list[bytes]], size: int, kind: type
) -> None:
    data, chunks = case
    sink = Recorder()
    emitter = core_impl.Emitter(sink, size)

    emitter.command(b"DATA")
    emitter.begin_data()
    for chunk in chunks:
        emitter.write_data(kind(chunk))
        assert emitter.pending <= size
    emitter.end_data()
    emitter.command(b"QUIT")
    emitter.flush()

    assert sink.sent == b"DATA\r\n" + encode_all(core_impl, chunks) + b"QUIT\r\n"
    assert emitter.pending == 0
    assert all(0 < len(call) <= 64 for call in sink.calls)


@fixture_ok
@given(chunked(), st.sampled_from([64, 256, 1000]))
def test_emitter_keeps_no_reference_to_the_chunk(
    core_impl: ModuleType, case: tuple[bytes, list[bytes]], size: int
) -> None:
    data, chunks = case
    sink = Recorder()
    emitter = core_impl.Emitter(sink, size)

    emitter.begin_data()
    for chunk in chunks:
        reused = bytearray(chunk)
        emitter.write_data(reused)
        # The caller may overwrite or resize its chunk once write_data returns.
        reused[:] = b"\0" * len(reused)
        reused.extend(b"\0" * 8)
    emitter.end_data()
    emitter.flush()

    assert sink.sent == dot_stuffed(data)


def test_emitter_sends_long_runs_without_copying_into_the_buffer(
    core_impl: ModuleType,
) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink, 64)
    data = (b"x" * 1000 + b"\n") * 100

    emitter.begin_data()
    emitter.write_data(data)
    emitter.end_data()
    emitter.flush()

    assert sink.sent == dot_stuffed(data)
    # A 64-octet buffer holding every octet would need some 1,600 sends.
    assert len(sink.calls) < 20


@pytest.mark.parametrize("size", [64, 256, 1000])
def test_emitter_bounds_the_pieces_of_a_send(core_impl: ModuleType, size: int) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink, size)
    data = (b"x" * 200 + b"\n.\n") * 300

    emitter.begin_data()
    emitter.write_data(data)
    emitter.end_data()
    emitter.flush()

    assert sink.sent == dot_stuffed(data)
    assert max(len(call) for call in sink.calls) <= 64


def test_end_data_on_empty_content(core_impl: ModuleType) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink)
    emitter.begin_data()
    emitter.write_data(b"")
    emitter.end_data()
    assert sink.calls == []
    assert emitter.pending == 3
    emitter.flush()
    assert sink.sent == b".\r\n"


def test_begin_data_forgets_the_previous_message(core_impl: ModuleType) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink)
    emitter.begin_data()
    emitter.write_data(b"unterminated\r")
    emitter.begin_data()
    emitter.write_data(b"\n.next")
    emitter.end_data()
    emitter.flush()
    assert sink.sent == b"unterminated\r\n\r\n..next\r\n.\r\n"


# --- Emitter: commands and raw writes ------------------------------------------


def test_commands_wait_for_a_full_buffer_or_flush(core_impl: ModuleType) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink, 64)
    line = b"RCPT TO:<" + b"r" * 17 + b"@example.org>\r\n"  # 41 octets
    assert len(line) == 41

    emitter.command(line[:-2])
    assert (sink.calls, emitter.pending) == ([], 41)
    emitter.command(line[:-2])
    # The buffer filled: its 64 octets left, the rest waits for flush().
    assert [len(b"".join(call)) for call in sink.calls] == [64]
    assert emitter.pending == 18
    emitter.flush()
    assert sink.sent == line * 2
    assert emitter.pending == 0
    emitter.flush()
    assert len(sink.calls) == 2


def test_command_adds_crlf(core_impl: ModuleType) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink)
    emitter.command(b"MAIL FROM:<a@example.org> SIZE=1000")
    # An empty line is an empty AUTH response (RFC 4954 §4).
    emitter.command(b"")
    emitter.command(b"RSET")
    emitter.flush()
    assert sink.sent == b"MAIL FROM:<a@example.org> SIZE=1000\r\n\r\nRSET\r\n"


@pytest.mark.parametrize("bad", [b"\r", b"\n", b"\0", b"a\r\nRSET"])
@pytest.mark.parametrize("index", [0, 5, 31])
def test_command_refuses_line_breaks_and_queues_nothing(
    core_impl: ModuleType, bad: bytes, index: int
) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink)
    emitter.command(b"EHLO client.example.org")
    line = b"MAIL FROM:<a@example.org> BODY=8BITMIME"
    line = line[:index] + bad + line[index:]

    with pytest.raises(ValueError, match="command contains CR, LF or NUL"):
        emitter.command(line)
    assert emitter.pending == len(b"EHLO client.example.org\r\n")
    emitter.flush()
    assert sink.sent == b"EHLO client.example.org\r\n"


def test_command_error_names_only_the_verb(core_impl: ModuleType) -> None:
    emitter = core_impl.Emitter(Recorder())
    with pytest.raises(ValueError) as info:
        emitter.command(b"AUTH PLAIN c2VjcmV0 hunter2\r\n")
    assert str(info.value) == "AUTH command contains CR, LF or NUL"
    with pytest.raises(ValueError) as info:
        emitter.command(b"AUTH PLAIN " + b"s" * 600)
    assert str(info.value) == "AUTH command longer than 512 octets"


def test_command_length_limit(core_impl: ModuleType) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink)
    fits = b"NOOP " + b"x" * (512 - len(b"NOOP \r\n"))

    with pytest.raises(ValueError, match="^NOOP command longer than 512 octets$"):
        emitter.command(fits + b"x")
    with pytest.raises(ValueError, match="^NOOP command longer than 20 octets$"):
        emitter.command(b"NOOP " + b"y" * 14, 20)
    assert emitter.pending == 0

    emitter.command(fits)
    emitter.command(b"NOOP " + b"y" * 13, 20)
    emitter.flush()
    assert sink.sent == fits + b"\r\nNOOP " + b"y" * 13 + b"\r\n"


def test_command_signature(core_impl: ModuleType) -> None:
    parameters = inspect.signature(core_impl.Emitter.command).parameters
    assert list(parameters) == ["self", "line", "limit"]
    assert parameters["limit"].default == core_impl.MAX_COMMAND_LINE == 512
    assert all(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in parameters.values())


@pytest.mark.parametrize("args", [(), (b"NOOP", 512, 1)])
def test_command_takes_one_or_two_arguments(
    core_impl: ModuleType, args: tuple[object, ...]
) -> None:
    emitter = core_impl.Emitter(Recorder())
    with pytest.raises(TypeError):
        emitter.command(*args)
    with pytest.raises(TypeError):
        emitter.command(b"NOOP", limit=512)  # type: ignore[call-arg]
    assert emitter.pending == 0


def test_long_command_goes_through_a_small_buffer(core_impl: ModuleType) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink, 64)
    argument = bytes(range(0x21, 0x7F)) * 6
    line = b"XLONG " + argument[: 512 - len(b"XLONG \r\n")]

    emitter.command(line)
    emitter.flush()

    assert sink.sent == line + b"\r\n"
    assert len(sink.sent) == 512
    assert all(len(b"".join(call)) <= 64 for call in sink.calls)


def test_write_copies_small_data_and_sends_large_data_at_once(
    core_impl: ModuleType,
) -> None:
    sink = Recorder()
    emitter = core_impl.Emitter(sink, 64)

    emitter.command(b"BDAT 100 LAST")
    emitter.write(b"a" * 30)
    assert sink.calls == []
    emitter.write(memoryview(b"b" * 100))
    # One call: the buffered octets, then the data itself.
    assert len(sink.calls) == 1
    assert sink.sent == b"BDAT 100 LAST\r\n" + b"a" * 30 + b"b" * 100
    assert emitter.pending == 0

    emitter.write(bytearray(b"c" * 64))
    assert emitter.pending == 64
    emitter.flush()
    assert sink.sent.endswith(b"c" * 64)


def test_buffer_size(core_impl: ModuleType) -> None:
    assert core_impl.Emitter(Recorder()).size == 256
    assert core_impl.Emitter(Recorder(), 64).size == 64
    assert core_impl.Emitter(Recorder(), 65536).size == 65536
    with pytest.raises(ValueError, match="^buffer size must be at least 64 bytes$"):
        core_impl.Emitter(Recorder(), 63)


def test_sink_error_reaches_the_caller(core_impl: ModuleType) -> None:
    def broken(pieces: list[bytes | memoryview]) -> None:
        raise ConnectionResetError("peer went away")

    emitter = core_impl.Emitter(broken, 64)
    emitter.command(b"NOOP")
    with pytest.raises(ConnectionResetError):
        emitter.flush()
    emitter.begin_data()
    with pytest.raises(ConnectionResetError):
        emitter.write_data(b"z" * 1000)


# --- Command arguments and paths (RFC 5321 §4.1.2, §4.5.3.1) -----------------


@pytest.mark.parametrize("arg", [b"", b"SIZE=100", b"\x80\xff", b"a\tb"])
def test_check_argument_accepts(core_impl: ModuleType, arg: bytes) -> None:
    core_impl.check_argument(arg, "MAIL parameter")


@pytest.mark.parametrize("arg", [b"\r", b"a\nb", b"\0", b"x\r\n"])
def test_check_argument_refuses(core_impl: ModuleType, arg: bytes) -> None:
    with pytest.raises(ValueError, match="^MAIL parameter contains CR, LF or NUL$"):
        core_impl.check_argument(arg, "MAIL parameter")


@pytest.mark.parametrize(
    "address",
    [
        b"",
        b"postmaster",
        b"user@example.org",
        b'"a@b"@example.org',
        b"\xc3\xa9l\xc3\xa8ve@\xc3\xa9cole.example",
        b"l" * 64 + b"@" + b"d" * 189,
        b"x" * 254,
    ],
)
def test_check_path_accepts(core_impl: ModuleType, address: bytes) -> None:
    core_impl.check_path(address)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (b"a\r\nRCPT TO:<b>", "address contains CR, LF or NUL"),
        (b"a\0@b", "address contains CR, LF or NUL"),
        (b"x" * 255, "address longer than 256 octets"),
        (b"l" * 65 + b"@example.org", "local part longer than 64 octets"),
        (b"a b@example.org", "address contains a control character, space"),
        (b"<a@example.org>", "address contains a control character, space"),
        (b"a@example.org>", "address contains a control character, space"),
        (b"a\t@example.org", "address contains a control character, space"),
        (b"a\x7f@example.org", "address contains a control character, space"),
        (b"\x1f", "address contains a control character, space or angle bracket"),
    ],
)
def test_check_path_refuses(
    core_impl: ModuleType, address: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        core_impl.check_path(address)


# --- base64 (RFC 4648 §4) ----------------------------------------------------


@fixture_ok
@given(st.binary(max_size=200))
def test_b64_round_trip(core_impl: ModuleType, data: bytes) -> None:
    encoded = core_impl.b64encode(data)
    assert encoded == binascii.b2a_base64(data, newline=False)
    assert core_impl.b64decode(encoded) == data


@fixture_ok
@given(st.binary(max_size=24) | st.text("AQw09+/=\n -_", max_size=16).map(str.encode))
def test_b64decode_is_strict(core_impl: ModuleType, data: bytes) -> None:
    try:
        expected = binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        expected = None
    if len(data) % 4 or b"=" in data[:-2]:
        expected = None  # binascii lets padding follow a complete quantum
    if expected is None:
        with pytest.raises(ValueError, match="^invalid base64$"):
            core_impl.b64decode(data)
    else:
        assert core_impl.b64decode(data) == expected


@pytest.mark.parametrize(
    "data",
    [b"QQ", b"QQ=", b"QQ==\n", b" QQ==", b"QQ= =", b"Q===", b"====", b"QQ=A",
     b"QUJD=", b"QUJD====", b"QQ==QQ==", b"-_8=", b"QUJ\0"],
)  # fmt: skip
def test_b64decode_refuses(core_impl: ModuleType, data: bytes) -> None:
    with pytest.raises(ValueError, match="^invalid base64$"):
        core_impl.b64decode(data)


# --- Parity: both twins, side by side ------------------------------------------

needs_compiled = pytest.mark.skipif(
    NO_EXTENSIONS, reason="SMTPC_NO_EXTENSIONS=1: the compiled core is not used"
)


@needs_compiled
@given(chunked(), st.sampled_from([64, 256, 1000]))
def test_twins_give_identical_bytes(case: tuple[bytes, list[bytes]], size: int) -> None:
    from smtpc import _core

    data, chunks = case
    c_encoder, py_encoder = _core.DataEncoder(), _core_py.DataEncoder()
    for chunk in chunks:
        assert c_encoder.encode(chunk) == py_encoder.encode(chunk)
    assert c_encoder.finish() == py_encoder.finish()

    sent = []
    for core in (_core, _core_py):
        sink = Recorder()
        emitter = core.Emitter(sink, size)
        emitter.begin_data()
        for chunk in chunks:
            emitter.write_data(chunk)
        emitter.end_data()
        emitter.flush()
        sent.append(sink.sent)
    assert sent[0] == sent[1]


def bad_calls(core: ModuleType) -> list[Callable[[], object]]:
    emitter = core.Emitter(Recorder())
    return [
        lambda: core.Emitter(Recorder(), 10),
        lambda: core.check_argument("text", "HELO argument"),
        lambda: core.check_argument(None, "HELO argument"),
        lambda: core.check_path("user@example.org"),
        lambda: core.b64encode("text"),
        lambda: core.b64decode("QQ=="),
        lambda: core.b64decode(b"QQ=\n"),
        lambda: core.DataEncoder().encode("text"),
        lambda: core.DataEncoder().encode(42),
        lambda: emitter.write_data("text"),
        lambda: emitter.write(None),
        lambda: core.Emitter(Recorder(), "256"),
        lambda: emitter.command("MAIL"),
        lambda: emitter.command(b"MAIL FROM:<>", "512"),
        lambda: emitter.command("MAIL FROM:<>", "512"),
        lambda: emitter.command(b"\xff\xfe \r"),
        lambda: emitter.command(b"VRFY " + b"x" * 600),
        lambda: emitter.command(b"NOOP", 5),
        lambda: core.DataEncoder().encode(memoryview(b"abcd")[::2]),
    ]


@needs_compiled
def test_twins_raise_identical_errors() -> None:
    from smtpc import _core

    for c_call, py_call in zip(bad_calls(_core), bad_calls(_core_py), strict=True):
        error = error_of(c_call)
        assert error is not None
        assert error == error_of(py_call)


@needs_compiled
@given(st.binary(max_size=300) | st.sampled_from([b"a" * 64 + b"@b", b"a" * 300]))
def test_twins_agree_on_paths(address: bytes) -> None:
    from smtpc import _core

    assert error_of(lambda: _core.check_path(address)) == error_of(
        lambda: _core_py.check_path(address)
    )


# -- line endings for BDAT ------------------------------------------------------


@fixture_ok
@given(chunked())
def test_line_encoder_makes_every_line_ending_crlf_and_nothing_else(
    core_impl: ModuleType, case: tuple[bytes, list[bytes]]
) -> None:
    data, chunks = case
    encoder = core_impl.LineEncoder()
    out = b"".join(encoder.encode(chunk) for chunk in chunks)
    assert out == re.sub(rb"\r\n|\r|\n", b"\r\n", data)


@needs_compiled
@given(chunked())
def test_line_encoder_twins_agree_chunk_by_chunk(
    case: tuple[bytes, list[bytes]],
) -> None:
    from smtpc import _core

    _, chunks = case
    c_encoder, py_encoder = _core.LineEncoder(), _core_py.LineEncoder()
    for chunk in chunks:
        assert c_encoder.encode(chunk) == py_encoder.encode(chunk)


def test_line_encoder_keeps_leading_dots(core_impl: ModuleType) -> None:
    encoder = core_impl.LineEncoder()
    assert encoder.encode(b".a\n..b\r") == b".a\r\n..b\r\n"
    assert encoder.encode(b"\n.\n") == b".\r\n"
    with pytest.raises(TypeError):
        encoder.encode("text")
