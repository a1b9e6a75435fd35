"""Message content from what callers hold, as chunks that never add up to a
second copy of the message.

Accepted: bytes-like objects, ``str`` (ASCII, as smtplib), binary files,
iterables of byte chunks, ``email.message.Message`` objects, and messages
composed with :class:`smtpc.mime.Message`.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

CHUNK_SIZE = 64 * 1024  # read size for files: one chunk is all a send holds

Chunk = bytes | bytearray | memoryview


@dataclass(slots=True)
class Source:
    """Message content ready to stream.

    Attributes:
        chunks: the content, chunk by chunk.
        size: its length in octets when known up front (for SIZE=).
        eight_bit: True or False when known, None when only the stream tells.
        single: the content is one chunk.
    """

    chunks: Iterable[Chunk]
    size: int | None
    eight_bit: bool | None
    single: bool


def from_bytes(data: Chunk) -> Source:
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    text = data if isinstance(data, bytes | bytearray) else view.tobytes()
    return Source((data,), transmitted_size(text), not text.isascii(), True)


def transmitted_size(data: bytes | bytearray) -> int:
    """Octets of ``data`` as sent: every line ending a CRLF, the last line
    ended, dots not counted (RFC 1870 §4)."""
    crlf = data.count(b"\r\n")
    size = len(data) + (data.count(b"\n") - crlf) + (data.count(b"\r") - crlf)
    if data and not data.endswith((b"\n", b"\r")):
        size += 2
    return size


def _read_chunk(read: Any, size: int) -> bytes | bytearray:
    chunk = read(size)
    if chunk is None:
        raise TypeError("message file gave no data: non-blocking files are refused")
    if not isinstance(chunk, bytes | bytearray):
        raise TypeError("message file must be opened in binary mode")
    return chunk


def _read_file(file: Any, size: int) -> Iterator[Chunk]:
    # The first read happens before anything is sent, so that a file that
    # cannot be read fails before the mail transaction starts.
    if getattr(file, "closed", False):
        raise ValueError("message file is closed")
    read = file.read
    first = _read_chunk(read, size)

    def chunks() -> Iterator[Chunk]:
        chunk = first
        while chunk:
            yield chunk
            chunk = _read_chunk(read, size)

    return chunks()


def _file_size(file: Any) -> int | None:
    """Octets left in a seekable file, or None when it cannot tell."""
    try:
        if not file.seekable():
            return None
        try:
            return os.fstat(file.fileno()).st_size - int(file.tell())
        except (OSError, AttributeError):
            here = file.tell()
            end = file.seek(0, io.SEEK_END)
            file.seek(here)
            return int(end - here)
    except (OSError, AttributeError, ValueError):
        return None


def _checked(chunks: Iterable[Any]) -> Iterator[Chunk]:
    for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(
                f"message chunks must be bytes-like, not {type(chunk).__name__}"
            )
        yield chunk


def open_source(msg: Any, chunk_size: int = CHUNK_SIZE) -> Source:
    """Wrap ``msg`` as a :class:`Source`.

    Raises:
        TypeError: ``msg`` is none of the accepted kinds, a file is open in
            text mode, or a chunk is not bytes-like.
        UnicodeEncodeError: a ``str`` message is not ASCII, as in smtplib.
    """
    if isinstance(msg, bytes | bytearray | memoryview):
        return from_bytes(msg)
    if isinstance(msg, MessageFile):
        return Source(iter(msg), msg.size, None, False)
    if isinstance(msg, str):
        return from_bytes(msg.encode("ascii"))
    if isinstance(msg, io.TextIOBase):
        raise TypeError("message file must be opened in binary mode")
    if hasattr(msg, "read"):
        size = _file_size(msg)  # before the first read moves the position
        return Source(_read_file(msg, chunk_size), size, None, False)
    if is_email_message(msg):
        return from_bytes(flatten(msg))
    composed = sys.modules.get("smtpc.mime")
    if composed is not None and isinstance(msg, composed.Message):
        # A composed message streams its parts and knows its size.
        return msg.as_source()  # type: ignore[no-any-return]
    if isinstance(msg, list | tuple):
        # Chunks that are all there are checked before anything is sent.
        return Source(list(_checked(msg)), None, None, False)
    if isinstance(msg, Iterable):
        return Source(_checked(msg), None, None, False)
    raise TypeError(
        "message must be bytes, str, a binary file, an iterable of bytes or an "
        f"email.message.Message, not {type(msg).__name__}"
    )


def is_reusable(msg: object) -> bool:
    """Whether ``msg`` gives the whole message again each time it is sent:
    bytes, str, a :class:`MessageFile` or an ``email.message.Message``."""
    if isinstance(msg, bytes | bytearray | memoryview | str | MessageFile):
        return True
    return is_email_message(msg)


def is_email_message(msg: object) -> bool:
    # A Message can only exist once its module is loaded: no import here.
    message = sys.modules.get("email.message")
    return message is not None and isinstance(msg, message.Message)


def flatten(msg: Any, utf8: bool = False) -> bytes:
    """Serialise an ``email.message.Message`` with CRLF line endings."""
    from email.generator import BytesGenerator

    policy = msg.policy.clone(utf8=True) if utf8 else msg.policy
    out = io.BytesIO()
    BytesGenerator(out, policy=policy).flatten(msg, linesep="\r\n")
    return out.getvalue()


def to_seven_bit(msg: Any) -> Any:
    """A copy of ``msg`` whose 8-bit parts are re-encoded for a server
    without 8BITMIME (RFC 6152 §3): text as quoted-printable, the rest as
    base64. Non-ASCII headers are RFC 2047 encoded when flattened."""
    import copy
    from email import encoders

    msg = copy.deepcopy(msg)
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).lower()
        if cte not in ("8bit", "binary"):
            continue
        raw = part.get_payload(decode=True)
        del part["Content-Transfer-Encoding"]
        part.set_payload(raw)
        if part.get_content_maintype() == "text":
            encoders.encode_quopri(part)
        else:
            encoders.encode_base64(part)
    return msg


# -- message files: the header section, and Bcc kept off the wire -------------

HEADER_LIMIT = 1 << 20  # longest header section read to find the envelope


def read_header(file: Any) -> bytes:
    """The header section of an RFC 5322 message in a binary file, with the
    empty line that ends it; the file is left at the start of the body.

    Raises:
        ValueError: the header section is longer than ``HEADER_LIMIT``.
    """
    lines = []
    size = 0
    while line := file.readline(HEADER_LIMIT + 1 - size):
        lines.append(line)
        size += len(line)
        if line in (b"\r\n", b"\n"):
            break
        if size > HEADER_LIMIT:
            raise ValueError("the header section is longer than 1 MiB")
    return b"".join(lines)


def without_bcc(header: bytes) -> bytes:
    """A header section without its Bcc and Resent-Bcc fields, which name
    recipients the others must not see (RFC 5322 §3.6.3)."""
    kept = []
    dropping = False
    for line in header.splitlines(keepends=True):
        folded = line[:1] in (b" ", b"\t")
        if not folded:
            name = line.split(b":", 1)[0].strip().lower() if b":" in line else b""
            dropping = name in (b"bcc", b"resent-bcc")
        if not dropping:
            kept.append(line)
    return b"".join(kept)


class MessageFile:
    """An RFC 5322 message in a file, read afresh at each sending (so a retry
    can send it again) and sent without its Bcc fields."""

    __slots__ = ("_removed", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._removed: int | None = None

    def header(self) -> bytes:
        """The header section as written in the file."""
        with open(self.path, "rb") as file:
            return read_header(file)

    @property
    def size(self) -> int:
        """Octets in the file, less the Bcc fields left out."""
        if self._removed is None:
            header = self.header()
            self._removed = len(header) - len(without_bcc(header))
        return os.stat(self.path).st_size - self._removed

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as file:
            yield without_bcc(read_header(file))
            while chunk := file.read(CHUNK_SIZE):
                yield chunk


def stream_without_bcc(file: Any) -> tuple[bytes, Iterator[bytes]]:
    """For a message read once (standard input): its header section, and
    the message content without Bcc fields, chunk by chunk."""
    header = read_header(file)

    def chunks() -> Iterator[bytes]:
        yield without_bcc(header)
        while chunk := file.read(CHUNK_SIZE):
            yield chunk

    return header, chunks()
