"""Pure-Python twin of ``smtpc._core``: same names, same bytes, same exceptions.

This module is the typed source of truth for the core; ``_core.pyi`` mirrors it.
It works on whole chunks with ``bytes`` methods, so its speed comes from C loops in
the interpreter rather than from Python-level loops over bytes.
"""

from __future__ import annotations

import binascii
import operator
from collections.abc import Callable

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "MAX_COMMAND_LINE",
    "MAX_DOMAIN",
    "MAX_LOCAL_PART",
    "MAX_PATH",
    "MIN_BUFFER_SIZE",
    "DataEncoder",
    "Emitter",
    "LineEncoder",
    "b64decode",
    "b64encode",
    "check_argument",
    "check_path",
]

DEFAULT_BUFFER_SIZE = 256
MIN_BUFFER_SIZE = 64
MAX_COMMAND_LINE = 512  # RFC 5321 §4.5.3.1.4, including CRLF
MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2
MAX_PATH = 256  # RFC 5321 §4.5.3.1.3, including the angle brackets

_Sink = Callable[[list[bytes | memoryview]], object]

# Octets a path may not contain: controls, space, DEL and the angle brackets that
# delimit it (RFC 5321 §4.1.2).
_PATH_FORBIDDEN = bytes(range(0x21)) + b"<>\x7f"


def _require_bytes(value: object, what: str) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"expected a bytes-like object, not {type(data).__name__}"
        ) from None
    return view.cast("B")


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if isinstance(data, bytes) else _byte_view(data).tobytes()


def check_argument(arg: bytes, what: str) -> None:
    """Refuse a command argument that could end the command line early.

    Args:
        arg: the argument as it will be sent.
        what: names the argument in the error message.

    Raises:
        ValueError: ``arg`` contains CR, LF or NUL (RFC 5321 §2.3.8).
        TypeError: ``arg`` is not bytes.
    """
    _require_bytes(arg, what)
    if b"\r" in arg or b"\n" in arg or b"\0" in arg:
        raise ValueError(f"{what} contains CR, LF or NUL")


def check_path(address: bytes, /) -> None:
    """Validate a mailbox for MAIL FROM or RCPT TO, given without angle brackets.

    ``b""`` is allowed: it is the null reverse-path. The local part is what comes
    before the last ``@``.

    Raises:
        ValueError: CR, LF or NUL; longer than RFC 5321 §4.5.3.1 allows; or a
            control character, space or angle bracket.
        TypeError: ``address`` is not bytes.
    """
    check_argument(address, "address")
    if len(address) + 2 > MAX_PATH:
        raise ValueError(f"address longer than {MAX_PATH} octets")
    at = address.rfind(b"@")
    if at >= 0:
        if at > MAX_LOCAL_PART:
            raise ValueError(f"local part longer than {MAX_LOCAL_PART} octets")
        if len(address) - at - 1 > MAX_DOMAIN:
            raise ValueError(f"domain longer than {MAX_DOMAIN} octets")
    if len(address.translate(None, _PATH_FORBIDDEN)) != len(address):
        raise ValueError("address contains a control character, space or angle bracket")


def b64encode(data: bytes, /) -> bytes:
    """Encode with the standard alphabet and padding, without a newline (RFC 4648 §4).

    Raises:
        TypeError: ``data`` is not bytes.
    """
    _require_bytes(data, "data")
    return binascii.b2a_base64(data, newline=False)


def b64decode(data: bytes, /) -> bytes:
    """Decode standard, padded base64, as in an AUTH challenge (RFC 4954 §4).

    Raises:
        ValueError: whitespace, a character outside the alphabet, a length that is
            not a multiple of 4, or padding anywhere but at the end.
        TypeError: ``data`` is not bytes.
    """
    _require_bytes(data, "data")
    # binascii's strict mode still accepts padding after a complete quantum.
    if len(data) % 4 or b"=" in data[:-2]:
        raise ValueError("invalid base64")
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise ValueError("invalid base64") from None


# --- Streaming transfer encodings for MIME (RFC 2045 §6.7, §6.8) ----------------
#
# Both encoders take content in chunks split anywhere and return what can be
# written so far; finish() returns the rest. The concatenated output is the same
# for every split, and each call returns the same bytes as the compiled twin's.

__all__ += ["Base64Encoder", "QuotedPrintableEncoder"]

_B64_LINE_OCTETS = 57  # input octets that make one 76-character line
_QP_LINE = 76  # the longest quoted-printable line without its CRLF

# An octet's quoted-printable form inside a line (RFC 2045 §6.7 rules 1-3):
# printable ASCII but "=", space and tab stand for themselves, the rest is "=XX".
_QP_FORMS = {
    i: chr(i) if 33 <= i <= 126 and i != 61 or i in (9, 32) else f"={i:02X}"
    for i in range(256)
}


class Base64Encoder:
    """Streaming base64 for a MIME body part (RFC 2045 §6.8).

    Lines of 76 characters end with CRLF, and so does the last one; empty content
    encodes to nothing. The output is ``base64.encodebytes(content)`` with CRLF for
    LF, however the content is split. encode() returns whole lines only: up to 56
    octets wait for the next chunk or finish().
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def encode(self, data: bytes | bytearray | memoryview, /) -> bytes:
        """Return the lines the content given so far completes.

        Raises:
            TypeError: ``data`` is not a bytes-like object.
        """
        content = self._pending + _byte_view(data)
        whole = len(content) - len(content) % _B64_LINE_OCTETS
        self._pending = content[whole:]
        if not whole:
            return b""
        encoded = binascii.b2a_base64(memoryview(content)[:whole], newline=False)
        lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
        lines.append(b"")
        return b"\r\n".join(lines)

    def finish(self) -> bytes:
        """Return the last line, padded, with its CRLF; reset the encoder."""
        if not self._pending:
            return b""
        line = binascii.b2a_base64(self._pending, newline=False) + b"\r\n"
        self._pending = b""
        return line


class QuotedPrintableEncoder:
    """Streaming quoted-printable for text (RFC 2045 §6.7).

    CRLF, a bare LF and a bare CR in the input are each one line break and come
    out as CRLF: text is in canonical form (RFC 2046 §4.1.1), so decoding gives
    CRLF line breaks. Octets other than printable ASCII (33-126 but "="), space and
    tab become "=XX". A space or tab that would end a line is encoded. Lines are at
    most 76 characters with a soft line break "=" that never splits an escape. The
    output equals the email package's ``quoprimime.body_encode(text, 76, "\\r\\n")``
    for the whole content, however it is split. The line being built is held until
    it is complete, so encode() may return less than the chunk gave.
    """

    __slots__ = ("_line", "_skip_lf", "_ws")

    def __init__(self) -> None:
        self._line = ""  # the encoded line being built, at most 76 characters
        self._ws = ""  # a space or tab that may end the line
        self._skip_lf = False  # the input so far ended with CR

    def encode(self, data: bytes | bytearray | memoryview, /) -> bytes:
        """Return the encoded text that the content given so far settles.

        Raises:
            TypeError: ``data`` is not a bytes-like object.
        """
        text = _byte_view(data).tobytes()
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == 0x0A:
                text = text[1:]
        if not text:
            return b""
        self._skip_lf = text[-1] == 0x0D
        lines = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        out: list[str] = []
        for line in lines[:-1]:
            self._add(line, out)
            self._end_line(out)
            out.append("\r\n")
        self._add(lines[-1], out)
        return "".join(out).encode("ascii")

    def finish(self) -> bytes:
        """Return the rest of the encoded text; reset the encoder.

        No line break is added after the last line of the content.
        """
        out: list[str] = []
        self._end_line(out)
        self._skip_lf = False
        return "".join(out).encode("ascii")

    def _add(self, raw: bytes, out: list[str]) -> None:
        text = self._ws + raw.decode("latin-1")
        self._ws = ""
        if text[-1:] in (" ", "\t"):
            self._ws = text[-1]
            text = text[:-1]
        self._line = _qp_wrap(self._line + text.translate(_QP_FORMS), out)

    def _end_line(self, out: list[str]) -> None:
        # Rule 3: a space or tab that ends a line is encoded. With 74 characters
        # on the line it stays literal before a soft line break, as the email
        # package's body_encode() does.
        line, ws = self._line, self._ws
        self._line = self._ws = ""
        if ws and len(line) == _QP_LINE - 2:
            out.append(line + ws + "=\r\n")
            return
        if ws:
            line = _qp_wrap(f"{line}={ord(ws):02X}", out)
        out.append(line)


def _qp_wrap(line: str, out: list[str]) -> str:
    # Rule 5: soft line breaks keep lines within 76 characters. An "=" in the
    # encoded text always starts an escape, which must stay whole.
    start = 0
    while len(line) - start > _QP_LINE:
        stop = start + _QP_LINE - 1
        if line[stop - 2] == "=":
            stop -= 2
        elif line[stop - 1] == "=":
            stop -= 1
        out.append(line[start:stop])
        out.append("=\r\n")
        start = stop
    return line[start:]


# --- end of the streaming transfer encodings -------------------------------------


def _stuff_lines(chunk: bytes) -> bytes:
    # Every line ending becomes CRLF, and a line after one that begins with "."
    # gets one more; the chunk's first line is left to the caller.
    if b"\r" in chunk:
        crlf = chunk.count(b"\r\n")
        if crlf == chunk.count(b"\r") == chunk.count(b"\n"):
            return chunk.replace(b"\r\n.", b"\r\n..")
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return chunk.replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")


def _after_cr(skip_lf: bool, chunk: bytes) -> bytes:
    # A CR that ended the last chunk went out as CRLF at once: an LF that
    # starts this one is the rest of that line ending.
    return chunk[1:] if skip_lf and chunk[:1] == b"\n" else chunk


class DataEncoder:
    """Streaming dot-stuffer for the message content after DATA (RFC 5321 §4.5.2).

    Every CRLF, bare LF and bare CR becomes CRLF, and a line that begins with "."
    gets one more. The output does not depend on how the input is cut into chunks.
    A CR that ends a chunk is written as CRLF at once; an LF that starts the next
    chunk is then dropped, as the second half of that line ending.
    """

    __slots__ = ("_at_line_start", "_skip_lf")

    def __init__(self) -> None:
        self._at_line_start = True
        self._skip_lf = False

    def encode(self, data: bytes | bytearray | memoryview, /) -> bytes:
        """Return the dot-stuffed form of the next chunk of message content.

        Raises:
            TypeError: ``data`` is not a bytes-like object.
        """
        chunk = _as_bytes(data)
        if chunk:
            chunk, self._skip_lf = _after_cr(self._skip_lf, chunk), False
        if not chunk:
            return b""

        last = chunk[-1]
        stuff_first = self._at_line_start and chunk[0] == 0x2E
        chunk = _stuff_lines(chunk)

        self._at_line_start = last in (0x0A, 0x0D)
        self._skip_lf = last == 0x0D
        return b"." + chunk if stuff_first else chunk

    def finish(self) -> bytes:
        """Return what ends the message content: CRLF if needed, then ".", CRLF.

        The encoder is reset afterwards, ready for the next message.
        """
        end = b".\r\n" if self._at_line_start else b"\r\n.\r\n"
        self.reset()
        return end

    def reset(self) -> None:
        """Forget the state left by earlier chunks."""
        self._at_line_start = True
        self._skip_lf = False


class LineEncoder:
    """Line-ending normaliser for BDAT chunks (RFC 3030 §3): every CRLF, bare
    LF and bare CR becomes CRLF, and nothing else changes. A CR that ends a
    chunk is written as CRLF at once, and an LF that starts the next chunk is
    dropped, as with DataEncoder.
    """

    __slots__ = ("_skip_lf",)

    def __init__(self) -> None:
        self._skip_lf = False

    def encode(self, data: bytes | bytearray | memoryview, /) -> bytes:
        """Return the next chunk with its line endings made CRLF.

        Raises:
            TypeError: ``data`` is not a bytes-like object.
        """
        chunk = _as_bytes(data)
        if chunk:
            chunk, self._skip_lf = _after_cr(self._skip_lf, chunk), False
        if not chunk:
            return b""
        self._skip_lf = chunk[-1] == 0x0D
        if b"\r" in chunk:
            crlf = chunk.count(b"\r\n")
            if crlf == chunk.count(b"\r") == chunk.count(b"\n"):
                return chunk
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        elif b"\n" not in chunk:
            return chunk
        return chunk.replace(b"\n", b"\r\n")


def _check_size(sink: _Sink, size: int = DEFAULT_BUFFER_SIZE, /) -> None:
    if operator.index(size) < MIN_BUFFER_SIZE:
        raise ValueError(f"buffer size must be at least {MIN_BUFFER_SIZE} bytes")


def _check_command(line: bytes, limit: int = MAX_COMMAND_LINE, /) -> None:
    limit = operator.index(limit)
    _require_bytes(line, "command")
    what = line.split(b" ", 1)[0].decode("ascii", "replace") + " command"
    check_argument(line, what)
    if len(line) + 2 > limit:
        raise ValueError(f"{what} longer than {limit} octets")


class Emitter:
    """Output through one fixed buffer to a sink.

    The sink takes a list of bytes or memoryview objects and must send them all, in
    order, before it returns; it must not keep the memoryviews, which show the
    buffer's memory. Commands stay in the buffer until it is full or ``flush()`` is
    called, so pipelined commands leave in one send.

    This twin dot-stuffs each chunk with ``DataEncoder.encode`` and queues the
    result with ``write()``: the sink sees the same bytes as from the compiled
    core, cut into different calls.

    Args:
        sink: called with the queued pieces, in order.
        size: buffer size in octets.

    Raises:
        ValueError: ``size`` is below ``MIN_BUFFER_SIZE``.
    """

    __slots__ = ("_buf", "_encoder", "_pos", "_sink")

    def __init__(self, sink: _Sink, size: int = DEFAULT_BUFFER_SIZE, /) -> None:
        _check_size(sink, size)
        self._sink = sink
        self._buf = bytearray(size)
        self._pos = 0
        self._encoder = DataEncoder()

    @property
    def size(self) -> int:
        """The buffer size in octets."""
        return len(self._buf)

    @property
    def pending(self) -> int:
        """Octets queued and not yet handed to the sink."""
        return self._pos

    def command(self, line: bytes, limit: int = MAX_COMMAND_LINE, /) -> None:
        """Queue a command line and its CRLF.

        Every check runs before anything is queued. Error messages name the verb
        only, never an argument, which may be a credential. An empty line is an
        empty AUTH response (RFC 4954 §4).

        Raises:
            ValueError: the line contains CR, LF or NUL, or with its CRLF is
                longer than ``limit`` (RFC 5321 §4.5.3.1.4).
            TypeError: the line is not bytes.
        """
        _check_command(line, limit)
        self._copy(line + b"\r\n")

    def write(self, data: bytes | bytearray | memoryview, /) -> None:
        """Queue octets as they are, as for a BDAT chunk (RFC 3030 §2).

        Data that does not fit in the free space goes to the sink at once, behind
        the buffered octets and in the same call, without being copied.

        Raises:
            TypeError: ``data`` is not a bytes-like object.
        """
        view = _byte_view(data)
        n = len(view)
        if n <= len(self._buf) - self._pos:
            self._buf[self._pos : self._pos + n] = view
            self._pos += n
            return
        pieces: list[bytes | memoryview] = [view]
        if self._pos:
            pieces.insert(0, memoryview(self._buf)[: self._pos])
        self._pos = 0
        self._sink(pieces)

    def begin_data(self) -> None:
        """Start new message content: reset the dot-stuffing state."""
        self._encoder.reset()

    def write_data(self, data: bytes | bytearray | memoryview, /) -> None:
        """Queue the next chunk of message content, dot-stuffed (RFC 5321 §4.5.2).

        The emitter keeps no reference to ``data`` once this returns.

        Raises:
            TypeError: ``data`` is not a bytes-like object.
        """
        encoded = self._encoder.encode(data)
        if encoded:
            self.write(encoded)

    def end_data(self) -> None:
        """Queue the end of the message content: CRLF if needed, then ".", CRLF."""
        self._copy(self._encoder.finish())

    def flush(self) -> None:
        """Hand everything queued to the sink."""
        if self._pos:
            view = memoryview(self._buf)[: self._pos]
            self._pos = 0
            self._sink([view])

    def _copy(self, data: bytes) -> None:
        # Copies through the buffer and sends each time it fills: the buffer
        # never grows, so a long command leaves in several sink calls.
        size = len(self._buf)
        done = 0
        while done < len(data):
            if self._pos == size:
                self.flush()
            n = min(len(data) - done, size - self._pos)
            self._buf[self._pos : self._pos + n] = data[done : done + n]
            self._pos += n
            done += n


# --- MD4 (RFC 1320), for NTLM where OpenSSL has no MD4 ---------------------------

__all__ += ["md4"]

_MD4_SHIFTS = ((3, 7, 11, 19), (3, 5, 9, 13), (3, 9, 11, 15))
# The order each round reads the sixteen message words in (RFC 1320 §3.4).
_MD4_ORDER = (
    tuple(range(16)),
    (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
    (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15),
)
_MD4_CONSTANTS = (0, 0x5A827999, 0x6ED9EBA1)


def md4(data: bytes | bytearray | memoryview, /) -> bytes:
    """The MD4 digest of ``data`` (RFC 1320): 16 bytes.

    MD4 is broken as a hash; NTLM still derives its keys with it.

    Raises:
        TypeError: ``data`` is not a bytes-like object.
    """
    message = _as_bytes(data)
    # §3.1-3.2: pad with 0x80 and zeros to 56 mod 64, then the bit length.
    length = (8 * len(message)) & 0xFFFFFFFFFFFFFFFF
    message += b"\x80" + bytes((55 - len(message)) % 64)
    message += length.to_bytes(8, "little")

    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for block in range(0, len(message), 64):
        x = [
            int.from_bytes(message[i : i + 4], "little")
            for i in range(block, block + 64, 4)
        ]
        a, b, c, d = state
        for rnd in range(3):
            for step, k in enumerate(_MD4_ORDER[rnd]):
                if rnd == 0:
                    f = (b & c) | (~b & d)
                elif rnd == 1:
                    f = (b & c) | (b & d) | (c & d)
                else:
                    f = b ^ c ^ d
                s = _MD4_SHIFTS[rnd][step % 4]
                t = (a + f + x[k] + _MD4_CONSTANTS[rnd]) & 0xFFFFFFFF
                a, b, c, d = d, ((t << s) | (t >> (32 - s))) & 0xFFFFFFFF, b, c
        state = [(v + w) & 0xFFFFFFFF for v, w in zip(state, (a, b, c, d), strict=True)]
    return b"".join(v.to_bytes(4, "little") for v in state)
