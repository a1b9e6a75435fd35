"""Reply reader: bytes in, parsed replies out (RFC 5321 §4.2).

The reader never waits and never grows without bound: a line longer than
``max_line``, a multiline reply of more than ``max_lines`` lines or
``max_size`` bytes is a :class:`RemoteProtocolError`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ..errors import RemoteProtocolError

# RFC 3463 §2: class.subject.detail, class matching the reply code's first digit.
_ENHANCED = re.compile(rb"([245])\.(\d{1,3})\.(\d{1,3})(?=[ \t]|$)")


class ReplyCode(enum.IntEnum):
    """Reply codes the engine acts on, named after RFC 5321 §4.2.2."""

    SERVICE_READY = 220
    CLOSING = 221
    AUTH_SUCCESSFUL = 235
    COMPLETED = 250
    WILL_FORWARD = 251
    CANNOT_VRFY = 252
    AUTH_CHALLENGE = 334
    START_MAIL_INPUT = 354
    SERVICE_NOT_AVAILABLE = 421
    BAD_SEQUENCE = 503
    AUTH_FAILED = 535


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete reply: its code, enhanced status code and text lines.

    ``lines`` hold each line's text after the code and separator, stripped of
    surrounding white space, as smtplib does.
    """

    code: int
    lines: tuple[bytes, ...]
    enhanced: str | None = None

    @property
    def message(self) -> bytes:
        """The text lines joined by ``\\n``: smtplib's reply message."""
        return b"\n".join(self.lines)

    @property
    def text(self) -> str:
        """The text lines as one string (UTF-8, undecodable bytes replaced)."""
        return self.message.decode("utf-8", "replace")

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def as_tuple(self) -> tuple[int, bytes]:
        """``(code, message)``: what smtplib's methods return."""
        return (self.code, self.message)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def parse_enhanced(code: int, text: bytes) -> str | None:
    """The RFC 3463 enhanced status code at the start of ``text``, if any."""
    match = _ENHANCED.match(text)
    if match is None or int(match[1]) != code // 100:
        return None
    return f"{match[1].decode()}.{int(match[2])}.{int(match[3])}"


class ReplyReader:
    """Assembles replies from the bytes received, one line at a time.

    Args:
        max_line: longest reply line accepted, line ending included.
        max_lines: most lines in one multiline reply.
        max_size: most bytes in one multiline reply.
    """

    __slots__ = (
        "_buffer",
        "_code",
        "_lines",
        "_size",
        "max_line",
        "max_lines",
        "max_size",
    )

    def __init__(
        self, max_line: int = 8192, max_lines: int = 256, max_size: int = 65536
    ) -> None:
        self.max_line = max_line
        self.max_lines = max_lines
        self.max_size = max_size
        self._buffer = bytearray()
        self._code = -1
        self._lines: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> int:
        """Bytes received that no complete reply has used yet."""
        return len(self._buffer) + self._size

    def feed(self, data: bytes) -> None:
        """Add bytes received from the server."""
        self._buffer += data

    def clear(self) -> None:
        """Drop everything received so far (after STARTTLS's 220, RFC 3207 §4.2)."""
        self._buffer.clear()
        self._code = -1
        self._lines.clear()
        self._size = 0

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive.

        Raises:
            RemoteProtocolError: the reply is malformed or too long.
        """
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line:
                    raise RemoteProtocolError(500, "Line too long.")
                return None
            if end + 1 > self.max_line:
                raise RemoteProtocolError(500, "Line too long.")
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            reply = self._take_line(line)
            if reply is not None:
                return reply

    def _take_line(self, line: bytes) -> Reply | None:
        # 1. RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
        #    Reply-code [ SP textstring ] CRLF
        code_digits, separator = line[:3], line[3:4]
        if not (code_digits.isdigit() and separator in (b" ", b"-", b"\r", b"\n")):
            raise RemoteProtocolError(-1, f"malformed reply line: {line[:40]!r}")
        code = int(code_digits)
        if not 200 <= code <= 599:
            raise RemoteProtocolError(-1, f"reply code out of range: {code}")

        # 2. §4.2.1: every line of a multiline reply carries the same code.
        if self._lines and code != self._code:
            raise RemoteProtocolError(
                -1,
                f"reply code changed within a multiline reply: {self._code} "
                f"then {code}",
            )
        self._code = code
        self._lines.append(line[4:].strip(b" \t\r\n"))
        self._size += len(line)
        if len(self._lines) > self.max_lines or self._size > self.max_size:
            raise RemoteProtocolError(-1, "multiline reply too long")
        if separator == b"-":
            return None

        # 3. The last line ends the reply.
        lines = tuple(self._lines)
        self._lines.clear()
        self._size = 0
        return Reply(code, lines, parse_enhanced(code, lines[0]))
