"""Compose MIME messages whose parts stream from files, chunk iterables or callables.

A :class:`Message` is a message source: iterating it yields the whole RFC 5322
message, headers and body parts, as byte chunks with CRLF line endings. Part
content is read one chunk at a time and encoded on the way out by the core's
streaming encoders, so memory stays flat whatever the attachments' sizes.
``SMTP.sendmail`` and ``SMTP.deliver`` take a Message as they take bytes, with
its size declared in ``SIZE=`` when every part's length is known::

    msg = Message(from_addr="ann@example.org", to="bob@example.org",
                  subject="Report", text="See attached.")
    msg.attach("report.pdf")
    msg.negotiate(smtp.esmtp_features)  # 8bit text where the server takes it
    smtp.sendmail("ann@example.org", msg.recipients, msg)

Line breaks in text (the text and HTML bodies, and ``text/*`` attachments) are
canonical CRLF (RFC 2046 §4.1.1): CRLF, a bare LF and a bare CR each become one
CRLF. Other parts are sent byte for byte in base64.

The email package is imported only to encode headers and parameters that need
it (RFC 2047, RFC 2231), and ``mimetypes`` only to guess a Content-Type.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, TypeAlias

from . import core
from .sources import Source

__all__ = ["CHUNK_SIZE", "Content", "Message", "transfer_encoding"]

# Read size: a multiple of 57, so the base64 encoder never holds octets back.
CHUNK_SIZE = 57 * 1150

Chunk: TypeAlias = bytes | bytearray | memoryview
Content: TypeAlias = (
    "str | os.PathLike[str] | Chunk | BinaryIO | Iterable[Chunk]"
    " | Callable[[], Iterable[Chunk]]"
)
Encoding = Literal["7bit", "8bit", "quoted-printable", "base64", "binary"]

# RFC 5322 §2.1.1 and RFC 2045 §2.8: no line of 7bit or 8bit data may pass 998
# octets without its CRLF.
_MAX_LINE = 998
# Header lines are folded to stay within this (RFC 5322 §2.1.1 "SHOULD").
_FOLD_AT = 78
# A boundary delimiter can never occur in base64 or quoted-printable text: "="
# there is padding or starts "=XX" or a soft line break.
_BOUNDARY_PREFIX = "=_smtpc_"
# Headers the composition writes itself.
_OWN_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "mime-version", "bcc"}
)


def transfer_encoding(
    *,
    text: bool,
    eight_bit: bool | None,
    fits_lines: bool | None,
    eight_bit_mime: bool = False,
    binary_mime: bool = False,
) -> Encoding:
    """The Content-Transfer-Encoding a server with these extensions can take.

    Text is 7bit when it is ASCII with lines that fit, 8bit when it has 8-bit
    octets, lines that fit and the server offers 8BITMIME (RFC 6152), and
    quoted-printable otherwise, also when the content is not known in advance.
    Other content is base64, or binary when ``binary_mime`` is true.

    Args:
        text: the content is text, with line breaks.
        eight_bit: the content has octets above 127; None when unknown.
        fits_lines: every line is at most 998 octets and no octet is NUL
            (RFC 2045 §2.7, §2.8); None when unknown.
        eight_bit_mime: the server offers 8BITMIME.
        binary_mime: the server offers BINARYMIME and the content goes in
            BDAT chunks with ``BODY=BINARYMIME`` (RFC 3030 §3), as sent.

    Returns:
        ``"7bit"``, ``"8bit"``, ``"quoted-printable"``, ``"base64"`` or
        ``"binary"``.
    """
    if not text:
        return "binary" if binary_mime else "base64"
    if fits_lines and eight_bit is False:
        return "7bit"
    if fits_lines and eight_bit and eight_bit_mime:
        return "8bit"
    return "quoted-printable"


def base64_length(size: int) -> int:
    """Octets of base64 with CRLF every 76 characters for ``size`` octets."""
    characters = (size + 2) // 3 * 4
    return characters + 2 * ((characters + 75) // 76)


# --- part content -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stats:
    """What one pass over text content found, line breaks made CRLF."""

    length: int
    eight_bit: bool
    fits_lines: bool


class _Body:
    """Where one part's content comes from, read afresh for each rendering.

    Paths are reopened, seekable files rewound, callables called again; an
    iterator or unseekable file can be read once.
    """

    def __init__(self, content: Any, size: int | None, what: str) -> None:
        self.what = what
        self._content: Any = content
        self._start = 0
        self._once = False
        self._used = False
        self._size = size
        if isinstance(content, bytes | bytearray | memoryview):
            view = memoryview(content)
            self._size = view.nbytes
        elif isinstance(content, str | os.PathLike):
            if not os.path.isfile(content):
                raise ValueError(f"{what}: no such file: {os.fsdecode(content)}")
        elif isinstance(content, io.TextIOBase):
            raise TypeError(f"{what}: the file must be opened in binary mode")
        elif hasattr(content, "read"):
            self._once = not _seekable(content)
            if not self._once:
                self._start = content.tell()
        elif callable(content):
            pass
        elif isinstance(content, Iterable):
            self._once = iter(content) is content
        else:
            raise TypeError(
                f"{what}: content must be a path, bytes, a binary file, an "
                f"iterable of bytes or a callable, not {type(content).__name__}"
            )

    @property
    def rereadable(self) -> bool:
        return not self._once

    def size(self) -> int | None:
        """The content's length in octets, when known without reading it."""
        content = self._content
        if self._size is not None:
            return self._size
        if isinstance(content, str | os.PathLike):
            return os.stat(content).st_size
        if hasattr(content, "read") and not self._once:
            return _remaining(content, self._start)
        return None

    def chunks(self) -> Iterator[Chunk]:
        """The content, chunk by chunk."""
        if self._used and self._once:
            raise ValueError(f"{self.what}: the content can be read only once")
        self._used = True
        content = self._content
        if isinstance(content, bytes | bytearray | memoryview):
            if len(content):
                yield content
        elif isinstance(content, str | os.PathLike):
            with open(content, "rb") as file:
                yield from _read(file)
        elif hasattr(content, "read"):
            if not self._once:
                content.seek(self._start)
            yield from _read(content)
        else:
            source = content() if callable(content) else content
            for chunk in source:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise TypeError(
                        f"{self.what}: chunks must be bytes-like, "
                        f"not {type(chunk).__name__}"
                    )
                yield chunk


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _remaining(file: Any, start: int) -> int:
    try:
        return os.fstat(file.fileno()).st_size - start
    except (AttributeError, OSError, io.UnsupportedOperation):
        here = file.tell()
        end = int(file.seek(0, io.SEEK_END))
        file.seek(here)
        return end - start


def _read(file: Any) -> Iterator[Chunk]:
    read = file.read
    while chunk := read(CHUNK_SIZE):
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError("attachment files must be opened in binary mode")
        yield chunk


def _canonical(chunks: Iterable[Chunk]) -> Iterator[bytes]:
    """Text with every CRLF, bare LF and bare CR made CRLF (RFC 2046 §4.1.1)."""
    skip_lf = False
    for raw in chunks:
        chunk = bytes(raw)
        if skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        if not chunk:
            continue
        # A CR that ends the chunk goes out as CRLF now; an LF that starts
        # the next chunk is its other half.
        skip_lf = chunk[-1:] == b"\r"
        crlf = chunk.count(b"\r\n")
        if not (chunk.count(b"\r") == crlf == chunk.count(b"\n")):
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            chunk = chunk.replace(b"\n", b"\r\n")
        yield chunk


def _scan(chunks: Iterable[Chunk]) -> _Stats:
    length = 0
    eight_bit = False
    fits = True
    line = 0  # octets of the line that the last chunk left open
    for chunk in _canonical(chunks):
        length += len(chunk)
        eight_bit = eight_bit or not chunk.isascii()
        if fits:
            lines = chunk.split(b"\r\n")
            longest = line + len(lines[0])
            if len(lines) > 1:
                longest = max(longest, *map(len, lines[1:]))
                line = len(lines[-1])
            else:
                line = longest
            fits = longest <= _MAX_LINE and b"\0" not in chunk
    return _Stats(length, eight_bit, fits)


class _Part:
    """A leaf body part: its headers and content."""

    def __init__(
        self,
        body: _Body,
        content_type: str,
        params: list[tuple[str, str]],
        text: bool,
        headers: list[tuple[str, str]],
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.params = params
        self.text = text
        self.headers = headers
        self._stats: _Stats | None = None
        self._scanned = False

    def stats(self) -> _Stats | None:
        """Text content's statistics, when it can be read twice."""
        if not self._scanned and self.text and self.body.rereadable:
            self._stats = _scan(self.body.chunks())
            self._scanned = True
        return self._stats

    def encoding(self, eight_bit_mime: bool) -> Encoding:
        stats = self.stats()
        return transfer_encoding(
            text=self.text,
            eight_bit=stats.eight_bit if stats else None,
            fits_lines=stats.fits_lines if stats else None,
            eight_bit_mime=eight_bit_mime,
        )

    def encoded_size(self, encoding: Encoding) -> int | None:
        """The length of the encoded content, or None when unknown."""
        stats = self.stats()
        if encoding in ("7bit", "8bit"):
            return stats.length if stats else None
        if encoding == "quoted-printable":
            if not self.body.rereadable:
                return None
            return sum(len(piece) for piece in self.encoded(encoding))
        size = self.body.size()
        if size is None:
            return None
        return base64_length(size) if encoding == "base64" else size

    def encoded(self, encoding: Encoding) -> Iterator[bytes]:
        chunks = self.body.chunks()
        if encoding in ("7bit", "8bit"):
            yield from _canonical(chunks)
            return
        if encoding == "binary":
            for chunk in chunks:
                yield bytes(chunk)
            return
        encoder: core.Base64Encoder | core.QuotedPrintableEncoder
        if encoding == "base64":
            encoder = core.Base64Encoder()
        else:
            encoder = core.QuotedPrintableEncoder()
        for chunk in chunks:
            if piece := encoder.encode(chunk):
                yield piece
        if piece := encoder.finish():
            yield piece


@dataclass(slots=True)
class _Multipart:
    subtype: str
    children: list[_Part | _Multipart]
    boundary: str


# A rendering plan: fixed octets, and parts to encode between them.
_Step = bytes | tuple[_Part, Encoding, int | None]


# --- headers --------------------------------------------------------------------


def _check_header(name: str, value: str) -> None:
    if not name or not all(33 <= ord(c) <= 126 and c != ":" for c in name):
        raise ValueError(f"invalid header name: {name!r}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{name} header contains CR, LF or NUL")


def _unstructured(name: str, value: str) -> str:
    """A header value as RFC 5322 allows: RFC 2047 words when not ASCII, folded."""
    _check_header(name, value)
    if value.isascii() and len(name) + 2 + len(value) <= _FOLD_AT:
        return value
    from email.header import Header

    charset = "us-ascii" if value.isascii() else "utf-8"
    folded = Header(value, charset, maxlinelen=_FOLD_AT, header_name=name)
    return folded.encode(linesep="\r\n")


def _addresses(name: str, values: Sequence[str]) -> tuple[str, list[str]]:
    """The header value for mailboxes and their bare addresses.

    Display names that are not ASCII become RFC 2047 encoded-words.
    """
    from email.utils import formataddr, getaddresses

    shown, bare = [], []
    for value in values:
        _check_header(name, value)
        found = getaddresses([value])
        if not found or not all("@" in addr for _, addr in found):
            raise ValueError(f"{name}: not an address: {value!r}")
        for display, addr in found:
            if not addr.isascii():
                raise ValueError(
                    f"{name}: {addr!r} is not ASCII; composed messages do not "
                    "use SMTPUTF8"
                )
            shown.append(formataddr((display, addr), charset="utf-8"))
            bare.append(addr)
    return _fold(name, shown, ","), bare


def _fold(name: str, items: list[str], separator: str) -> str:
    """Join items, starting a new line where the current one would pass 78."""
    out = ""
    column = len(name) + 2
    for i, item in enumerate(items):
        piece = item + (separator if i + 1 < len(items) else "")
        if i and column + 1 + len(piece) > _FOLD_AT:
            out += "\r\n "
            column = 1
        elif i:
            out += " "
            column += 1
        out += piece
        column += len(piece)
    return out


def _parameter(name: str, value: str) -> list[str]:
    """``name="value"``, or RFC 2231 ``name*=`` pieces when it is not ASCII."""
    if value.isascii() and value.isprintable() and len(value) <= 60:
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        return [f'{name}="{quoted}"']
    from email.utils import encode_rfc2231

    encoded = encode_rfc2231(value, "utf-8")
    if len(encoded) <= 60:
        return [f"{name}*={encoded}"]
    # RFC 2231 §3: continuations, each cut between two %XX escapes.
    pieces: list[str] = []
    while encoded:
        cut = min(len(encoded), 60)
        percent = encoded.rfind("%", cut - 2, cut)
        if percent >= 0 and cut < len(encoded):
            cut = percent
        pieces.append(f"{name}*{len(pieces)}*={encoded[:cut]}")
        encoded = encoded[cut:]
    return pieces


def _with_parameters(header: str, value: str, params: list[tuple[str, str]]) -> str:
    items = [value]
    for name, param in params:
        items += _parameter(name, param)
    return _fold(header, [i + ";" for i in items[:-1]] + items[-1:], "")


def _header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    return "".join(f"{n}: {v}\r\n" for n, v in headers).encode("ascii")


# --- the message -----------------------------------------------------------------


class Message:
    """A MIME message composed from parts that stream.

    Args:
        from_addr: the From mailbox, ``"Name <addr>"`` or an address.
        to, cc: mailboxes for To and Cc: one string (commas allowed) or
            several.
        bcc: forward-paths that appear in no header; they join
            :attr:`recipients`.
        subject: the Subject; not ASCII becomes RFC 2047 encoded-words.
        text: the plain-text body.
        html: the HTML body; with ``text`` too, the two are
            multipart/alternative (RFC 2046 §5.1.4).
        headers: more header fields, in order; not ASCII becomes RFC 2047
            encoded-words. Content-Type, Content-Transfer-Encoding,
            MIME-Version and Bcc are refused: the message writes them.
        date, message_id: add Date and Message-ID when not in ``headers``.

    Raises:
        ValueError: CR, LF or NUL in a header, a bad header name or address,
            or a header the message writes itself.
    """

    def __init__(
        self,
        *,
        from_addr: str,
        to: str | Sequence[str] = (),
        cc: str | Sequence[str] = (),
        bcc: str | Sequence[str] = (),
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        date: bool = True,
        message_id: bool = True,
    ) -> None:
        from_value, senders = _addresses("From", [from_addr])
        if len(senders) != 1:
            raise ValueError("From: give one mailbox")
        self.from_addr: str = senders[0]
        self._headers: list[tuple[str, str]] = [("From", from_value)]
        self.recipients: list[str] = []
        for name, value in (("To", to), ("Cc", cc), ("Bcc", bcc)):
            values = [value] if isinstance(value, str) else list(value)
            if not values:
                continue
            shown, bare = _addresses(name, values)
            self.recipients += bare
            if name != "Bcc":
                self._headers.append((name, shown))
        if subject is not None:
            self._headers.append(("Subject", _unstructured("Subject", subject)))
        items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            self.add_header(name, value)
        given = {n.lower() for n, _ in self._headers}
        self._date = date and "date" not in given
        self._message_id = message_id and "message-id" not in given
        self._text = _text_part(text, "plain") if text is not None else None
        self._html = _text_part(html, "html") if html is not None else None
        self._attachments: list[_Part] = []
        self._inline: list[_Part] = []
        self._eight_bit_mime = False
        self._plan: list[_Step] | None = None

    def add_header(self, name: str, value: str) -> None:
        """Add a header field after those given so far.

        Raises:
            ValueError: CR, LF or NUL in it, a bad name, or a header the
                message writes itself.
        """
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"{name}: the message writes this header itself")
        self._headers.append((name, _unstructured(name, value)))
        self._plan = None

    def attach(
        self,
        content: Content,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        size: int | None = None,
        charset: str | None = None,
    ) -> None:
        """Add an attachment (``Content-Disposition: attachment``).

        Args:
            content: a path (str or path-like), bytes, a binary file (read
                from its current position; rewound for each sending when
                seekable), an iterable of byte chunks, or a callable that
                returns one; an iterator or unseekable file can be sent once.
            filename: the name shown; by default the path's last component.
                Not ASCII becomes an RFC 2231 parameter.
            content_type: by default guessed from ``filename``
                (``application/octet-stream`` when unknown).
            size: the content's length in octets when the source cannot tell
                (an iterable or a callable), so the message's size is known.
            charset: the ``charset`` parameter of a text type.

        Raises:
            ValueError: a missing file, or a bad type or name.
            TypeError: content of no accepted kind.
        """
        self._attachments.append(
            _attachment(content, filename, content_type, size, charset, None)
        )
        self._plan = None

    def add_inline(
        self,
        content: Content,
        filename: str | None = None,
        content_type: str | None = None,
        *,
        cid: str | None = None,
        size: int | None = None,
    ) -> str:
        """Add an inline part, such as an image the HTML body shows.

        With an HTML body the inline parts join it in multipart/related
        (RFC 2387); the HTML refers to each as ``cid:<content-id>``.

        Args:
            cid: the Content-ID without angle brackets; generated when None.
            others: as for :meth:`attach`.

        Returns:
            The Content-ID, without angle brackets.

        Raises:
            what :meth:`attach` raises; ValueError for a bad ``cid``.
        """
        if cid is None:
            domain = self.from_addr.rpartition("@")[2]
            cid = f"{secrets.token_hex(8)}@{domain}"
        if not cid.isascii() or any(c in cid for c in "<> \t\r\n\0"):
            raise ValueError(f"invalid Content-ID: {cid!r}")
        part = _attachment(content, filename, content_type, size, None, cid)
        self._inline.append(part)
        self._plan = None
        return cid

    def negotiate(self, features: Mapping[str, str]) -> None:
        """Pick transfer encodings a server with these extension keywords takes.

        ``features`` maps lower-case extension keywords to their parameters,
        as ``SMTP.esmtp_features`` once EHLO has been sent. With 8BITMIME,
        text with 8-bit octets and short lines goes as 8bit; without it, as
        quoted-printable.
        Binary parts stay base64: smtpc makes line breaks CRLF in BDAT
        chunks too and does not declare ``BODY=BINARYMIME``.
        """
        eight_bit_mime = "8bitmime" in features
        if eight_bit_mime != self._eight_bit_mime:
            self._eight_bit_mime = eight_bit_mime
            self._plan = None

    @property
    def size(self) -> int | None:
        """The message's length in octets, or None when a part's is unknown.

        A part from a path or a sized file is counted exactly; quoted-printable
        text from one is encoded once to count it.
        """
        total = 0
        for step in self._steps():
            if isinstance(step, bytes):
                total += len(step)
            elif step[2] is None:
                return None
            else:
                total += step[2]
        return total

    @property
    def eight_bit(self) -> bool:
        """Some part goes as 8bit: the server must offer 8BITMIME."""
        return any(
            not isinstance(s, bytes) and s[1] in ("8bit", "binary")
            for s in self._steps()
        )

    def as_source(self) -> Source:
        """This message as a :class:`~smtpc.sources.Source` for a transaction."""
        return Source(iter(self), self.size, self.eight_bit, False)

    def __iter__(self) -> Iterator[bytes]:
        """The message, in chunks of about CHUNK_SIZE octets.

        Raises:
            ValueError: a part's content changed length after it was counted,
                or an iterator's content was already sent.
        """
        return _coalesce(self._render(self._steps()))

    def _render(self, steps: list[_Step]) -> Iterator[bytes]:
        for step in steps:
            if isinstance(step, bytes):
                yield step
                continue
            part, encoding, expected = step
            produced = 0
            for piece in part.encoded(encoding):
                produced += len(piece)
                yield piece
            if expected is not None and produced != expected:
                raise ValueError(
                    f"{part.body.what} changed while it was sent: "
                    f"{produced} octets encoded, {expected} counted"
                )

    def _steps(self) -> list[_Step]:
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    def _make_plan(self) -> list[_Step]:
        from email.utils import formatdate, make_msgid

        headers = list(self._headers)
        if self._date:
            headers.append(("Date", formatdate(localtime=True)))
        if self._message_id:
            domain = self.from_addr.rpartition("@")[2]
            headers.append(("Message-ID", make_msgid(domain=domain)))
        headers.append(("MIME-Version", "1.0"))
        steps: list[_Step] = []
        self._plan_node(self._tree(), headers, steps)
        return _merge(steps)

    def _tree(self) -> _Part | _Multipart:
        # RFC 2046 §5.1.4 and RFC 2387: mixed( alternative( text,
        # related( html, inline... ) ), attachments... ).
        html: _Part | _Multipart | None = self._html
        inline = list(self._inline)
        if html is not None and inline:
            html = _Multipart("related", [html, *inline], _boundary())
            inline = []
        body = [p for p in (self._text, html) if p is not None]
        if len(body) == 2:
            body = [_Multipart("alternative", body, _boundary())]
        children = body + inline + self._attachments
        if not children:
            return _text_part("", "plain")
        if len(children) == 1:
            return children[0]
        return _Multipart("mixed", children, _boundary())

    def _plan_node(
        self,
        node: _Part | _Multipart,
        headers: list[tuple[str, str]],
        steps: list[_Step],
    ) -> None:
        if isinstance(node, _Multipart):
            value = f'multipart/{node.subtype}; boundary="{node.boundary}"'
            headers.append(("Content-Type", value))
            steps.append(_header_lines(headers) + b"\r\n")
            delimiter = f"--{node.boundary}".encode("ascii")
            for child in node.children:
                steps.append(delimiter + b"\r\n")
                self._plan_node(child, [], steps)
                steps.append(b"\r\n")
            steps.append(delimiter + b"--\r\n")
            return
        encoding = node.encoding(self._eight_bit_mime)
        value = _with_parameters("Content-Type", node.content_type, node.params)
        headers.append(("Content-Type", value))
        headers.append(("Content-Transfer-Encoding", encoding))
        headers += node.headers
        steps.append(_header_lines(headers) + b"\r\n")
        steps.append((node, encoding, node.encoded_size(encoding)))


def _text_part(text: str, subtype: str) -> _Part:
    if not isinstance(text, str):
        raise TypeError(f"the {subtype} body must be str, not {type(text).__name__}")
    body = _Body(text.encode("utf-8"), None, f"{subtype} body")
    return _Part(body, f"text/{subtype}", [("charset", "utf-8")], True, [])


def _attachment(
    content: Content,
    filename: str | None,
    content_type: str | None,
    size: int | None,
    charset: str | None,
    cid: str | None,
) -> _Part:
    if filename is None and isinstance(content, str | os.PathLike):
        filename = os.path.basename(os.fsdecode(content))
    if filename is not None:
        _check_header("filename", filename)
    if content_type is None:
        import mimetypes

        guessed = mimetypes.guess_type(filename or "", strict=False)[0]
        content_type = guessed or "application/octet-stream"
    maintype, _, subtype = content_type.partition("/")
    if not (maintype and subtype and content_type.isascii()):
        raise ValueError(f"invalid content type: {content_type!r}")
    _check_header("Content-Type", content_type)
    if maintype.lower() == "multipart":
        raise ValueError("a multipart type cannot be an attachment's type")
    if size is not None and size < 0:
        raise ValueError("size must not be negative")
    what = f"attachment {filename!r}" if filename else "attachment"
    body = _Body(content, size, what)
    params = [("charset", charset)] if charset else []
    disposition = "inline" if cid else "attachment"
    names = [("filename", filename)] if filename else []
    value = _with_parameters("Content-Disposition", disposition, names)
    headers = [("Content-Disposition", value)]
    if cid:
        headers.append(("Content-ID", f"<{cid}>"))
    text = maintype.lower() == "text"
    return _Part(body, content_type.lower(), params, text, headers)


def _boundary() -> str:
    return _BOUNDARY_PREFIX + secrets.token_hex(16)


def _merge(steps: list[_Step]) -> list[_Step]:
    merged: list[_Step] = []
    for step in steps:
        if isinstance(step, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += step
        else:
            merged.append(step)
    return merged


def _coalesce(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Chunks of about CHUNK_SIZE: small pieces are gathered, large ones pass."""
    pending = bytearray()
    for piece in pieces:
        if not pending and len(piece) >= CHUNK_SIZE // 2:
            yield piece
            continue
        pending += piece
        if len(pending) >= CHUNK_SIZE // 2:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)
