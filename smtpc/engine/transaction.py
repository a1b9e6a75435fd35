"""One mail transaction as steps every driver runs (RFC 5321 §3.3).

MAIL, RCPT... and DATA go out in one write when the server offers
PIPELINING (RFC 2920), and their replies are paired with them in order.
With CHUNKING (RFC 3030) the message content goes in BDAT chunks, without
dot-stuffing. The steps never raise for a refusal: they return a
:class:`TransactionResult` that says what each reply was, and leave the
session reset (RSET) or closed (after a 421).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .. import core
from ..errors import SMTPServerDisconnected
from .commands import DSN, check_command, command_limit, encode_path
from .replies import Reply, ReplyCode
from .session import DRAIN, READ, Session, State, Steps

# Queue identifiers as common servers word them in their final reply.
_QUEUE_ID = re.compile(
    rb"(?:queued as|queue id|id=|ok:? queued as)\s*<?([A-Za-z0-9._@\-]+)>?", re.I
)
Chunk = bytes | bytearray | memoryview
_DRAIN_EVERY = 16  # chunks between DRAIN steps while streaming content
_BDAT_WINDOW = 8  # BDAT replies awaited at most at once, with PIPELINING
_EAGER_BDAT = 16 * 1024  # largest content sent before the RCPT replies


@dataclass(slots=True)
class Envelope:
    """Reverse-path, forward-paths and their parameters (RFC 5321 §2.3.1)."""

    reverse_path: str
    forward_paths: Sequence[str]
    mail_params: Sequence[str] = ()
    rcpt_params: Sequence[str] = ()
    smtputf8: bool = False
    dsn: DSN | None = None

    def rcpt_params_for(self, address: str) -> list[str]:
        """The RCPT TO parameters for one forward-path."""
        params = list(self.rcpt_params)
        if self.dsn is not None:
            params += self.dsn.rcpt_params(address)
        return params


@dataclass(slots=True)
class RecipientResult:
    """One forward-path's outcome: its RCPT reply and, for LMTP, its final
    reply after the content."""

    address: str
    reply: Reply | None = None
    final: Reply | None = None

    @property
    def accepted(self) -> bool:
        """Accepted at RCPT and, for LMTP, delivered after the content."""
        rcpt_ok = self.reply is not None and self.reply.code in (250, 251)
        return rcpt_ok and (self.final is None or self.final.code == 250)

    @property
    def outcome(self) -> Reply | None:
        """The reply that decided this recipient's fate."""
        if self.final is not None:
            return self.final
        return self.reply


@dataclass(slots=True)
class TransactionResult:
    """What happened to one mail transaction, reply by reply."""

    reverse_path: str
    mail: Reply | None = None
    recipients: list[RecipientResult] = field(default_factory=list)
    data: Reply | None = None
    final: Reply | None = None
    error: BaseException | None = None

    @property
    def accepted(self) -> list[str]:
        """Forward-paths the server accepted the message for."""
        if self.final is None or not self.delivered:
            return []
        return [r.address for r in self.recipients if r.accepted]

    @property
    def refused(self) -> dict[str, tuple[int, bytes]]:
        """smtplib's return value: refused forward-paths to (code, text)."""
        refused = {}
        for r in self.recipients:
            outcome = r.outcome
            if outcome is not None and not r.accepted:
                refused[r.address] = outcome.as_tuple()
        return refused

    @property
    def delivered(self) -> bool:
        """The final reply accepted the message for at least one recipient."""
        if self.final is None or not any(r.accepted for r in self.recipients):
            return False
        if any(r.final is not None for r in self.recipients):
            return True
        return self.final.code == ReplyCode.COMPLETED

    @property
    def queue_id(self) -> str | None:
        """The server's queue identifier, when its final reply names one."""
        if self.final is None:
            return None
        match = _QUEUE_ID.search(self.final.message)
        return match[1].decode("ascii", "replace") if match else None


def run_transaction(
    session: Session,
    envelope: Envelope,
    chunks: Iterable[bytes | bytearray | memoryview],
    *,
    chunking: bool = True,
    single_chunk: bool = False,
    pending: TransactionResult | None = None,
    defer_final: bool = False,
) -> Steps:
    """MAIL, RCPT for each forward-path, then DATA or BDAT.

    Args:
        chunks: the message content, in chunks of any size.
        chunking: use BDAT when the server offers CHUNKING.
        single_chunk: ``chunks`` holds one chunk only (``BDAT n LAST``).
        pending: an earlier transaction whose final reply is still to come:
            it is read after this transaction's first group is sent.
        defer_final: after DATA's content with PIPELINING, return without
            reading the final reply; pass the result as the next call's
            ``pending``, or read it with :func:`finish_pending`.

    Returns:
        The :class:`TransactionResult`; the session is ready for the next
        transaction, or closed after a 421.
    """
    if pending is not None:
        # RFC 5321 §4.1.1.4: the final reply ends the transaction, whatever
        # it says, so the next one may already be on its way.
        session.state = State.READY
    session.check("MAIL")
    pipelining = session.has_extn("pipelining")
    use_bdat = chunking and session.has_extn("chunking")
    result = TransactionResult(envelope.reverse_path)
    emitter = session.emitter
    smtputf8 = envelope.smtputf8

    # 1. Compose every command first, so a bad argument raises before any
    #    byte of this transaction is sent.
    mail_line = b" ".join(
        [b"MAIL FROM:" + encode_path(envelope.reverse_path, smtputf8)]
        + [p.encode("ascii") for p in envelope.mail_params]
    )
    rcpt_lines = []
    for address in envelope.forward_paths:
        params = envelope.rcpt_params_for(address)
        path = b"RCPT TO:" + encode_path(address, smtputf8)
        line = b" ".join([path] + [p.encode("ascii") for p in params])
        rcpt_lines.append((line, command_limit(params)))
    mail_limit = command_limit(envelope.mail_params)
    check_command(mail_line, mail_limit)
    for line, limit in rcpt_lines:
        check_command(line, limit)
    result.recipients = [RecipientResult(a) for a in envelope.forward_paths]

    # A small single-chunk message goes with its envelope as BDAT LAST in
    # the same group (RFC 3030 §4.2): one round trip for the transaction.
    # Should every recipient be refused, the server refuses the chunk too.
    eager: bytes | bytearray | None = None
    if pipelining and use_bdat and single_chunk:
        (only,) = chunks
        normalised = _ended(core.LineEncoder().encode(only))
        if len(normalised) <= _EAGER_BDAT:
            eager = normalised

    if pending is not None and not (pipelining and not use_bdat):
        yield from finish_pending(session, pending)
        pending = None

    try:
        # 2. RFC 2920 §3.1: MAIL, the RCPTs and DATA in one group; without
        #    PIPELINING each command waits for its reply. The end of an
        #    earlier message's content may lead the group.
        session.send(mail_line, limit=mail_limit)
        if not pipelining:
            result.mail = yield READ
            session.after("MAIL", result.mail)
            if result.mail.code != ReplyCode.COMPLETED:
                return (yield from _abandon(session, result))
        for (line, limit), recipient in zip(rcpt_lines, result.recipients, strict=True):
            session.send(line, limit=limit)
            if not pipelining:
                recipient.reply = yield READ
                if session.state is State.CLOSED:
                    return result
        if pipelining:
            if eager is not None:
                session.send(b"BDAT %d LAST" % len(eager))
                emitter.write(eager)
            elif not use_bdat:
                session.send(b"DATA")
            if pending is not None:
                yield from finish_pending(session, pending)
                if session.state is State.CLOSED:
                    return result
                session.state = State.READY
            result.mail = yield READ
            session.after("MAIL", result.mail)
            for recipient in result.recipients:
                if _closed(session):
                    return result
                recipient.reply = yield READ
            if _closed(session):
                return result
            if eager is not None or not use_bdat:
                result.data = yield READ
            if eager is not None:
                result.final = result.data
            if _closed(session):
                return result
        mail_ok = result.mail is not None and result.mail.code == ReplyCode.COMPLETED
        if not (mail_ok and _any_accepted(result)):
            if result.data is not None and result.data.code == 354:
                # RFC 2920 §3.1: DATA was accepted with no transaction to
                # carry; end it with no content.
                emitter.end_data()
                result.final = yield READ
            return (yield from _abandon(session, result))

        # 3. The message content, unless it went with the envelope.
        if eager is not None:
            pass
        elif use_bdat:
            with _cut_off_closes(session):
                yield from _send_bdat(session, result, chunks, pipelining, single_chunk)
        else:
            if result.data is None:
                session.send(b"DATA")
                result.data = yield READ
            if result.data.code != ReplyCode.START_MAIL_INPUT:
                return (yield from _abandon(session, result))
            emitter.begin_data()
            with _cut_off_closes(session):
                for count, chunk in enumerate(chunks, 1):
                    emitter.write_data(chunk)
                    if count % _DRAIN_EVERY == 0:
                        yield DRAIN
            emitter.end_data()
            if defer_final and pipelining and not session.lmtp:
                return result
            result.final = yield READ

        # 4. RFC 2033 §4.2: LMTP gives one reply per accepted recipient.
        if session.lmtp and result.final is not None:
            accepted = [r for r in result.recipients if r.accepted]
            accepted[0].final = result.final
            for recipient in accepted[1:]:
                recipient.final = yield READ
        session.after("END", result.final or result.data)  # type: ignore[arg-type]
        if not result.delivered and session.state is not State.CLOSED:
            yield from session.rset_quietly()
        return result
    except SMTPServerDisconnected as exc:
        # Whatever the server had accepted is reported with the error.
        session.state = State.CLOSED
        result.error = exc
        exc.result = result  # type: ignore[attr-defined]
        raise


@contextlib.contextmanager
def _cut_off_closes(session: Session) -> Iterator[None]:
    """Close the session when the message content fails part-way (a source
    that raises, a chunk of the wrong type): SMTP has no command to abandon
    DATA or BDAT content (RFC 5321 §4.1.1.4), and whatever the client sent
    next would be taken as more content."""
    try:
        yield
    except SMTPServerDisconnected:
        raise
    except Exception:
        session.state = State.CLOSED
        raise


def finish_pending(session: Session, result: TransactionResult) -> Steps:
    """Read the final reply that ``defer_final`` left outstanding."""
    try:
        result.final = yield READ
    except SMTPServerDisconnected as exc:
        result.error = exc
        raise
    session.after("END", result.final)
    return result


def run_many(
    session: Session,
    transactions: Iterable[tuple[Envelope, Iterable[Chunk], bool]],
    done: Callable[[TransactionResult], object],
    *,
    chunking: bool = True,
) -> Steps:
    """Transactions back to back: with PIPELINING and DATA, each message's
    end of content leads the next transaction's group (RFC 2920 §3.1), so a
    message costs about one round trip. ``done`` gets each result in order.

    Raises:
        ValueError, TypeError: a bad envelope or message; what was sent
            before it is finished and reported first.
    """
    pending: TransactionResult | None = None
    count = 0
    try:
        for envelope, chunks, single in transactions:
            try:
                result = yield from run_transaction(
                    session,
                    envelope,
                    chunks,
                    chunking=chunking,
                    single_chunk=single,
                    pending=pending,
                    defer_final=True,
                )
            except SMTPServerDisconnected as exc:
                # The earlier message's final reply may have come before the
                # loss: it is reported as it stands, then this one.
                if pending is not None:
                    done(pending)
                    pending = None
                lost = getattr(exc, "result", None)
                if isinstance(lost, TransactionResult):
                    done(lost)
                raise
            count += 1
            if pending is not None:
                done(pending)
            # Content sent, final reply still to come (defer_final).
            sent = result.data is not None and result.data.code == 354
            pending = result if sent and result.final is None else None
            if pending is None:
                done(result)
            if session.state is State.CLOSED:
                # A 421 ended the session: say so, rather than stop short.
                error = SMTPServerDisconnected(
                    f"the server closed the session after {count} messages"
                )
                if result.final is None:
                    result.error = error
                raise error
    finally:
        if pending is not None:
            if pending.final is None and session.state is not State.CLOSED:
                yield from finish_pending(session, pending)
                done(pending)
            elif pending.final is not None:
                # Its final reply came before the next message failed (a
                # source that broke, a bad address): it is reported too.
                done(pending)
    return None


def _closed(session: Session) -> bool:
    # A 421 reply closes the session between two reads (RFC 5321 §3.8).
    return session.state is State.CLOSED


def _any_accepted(result: TransactionResult) -> bool:
    return any(
        r.reply is not None and r.reply.code in (250, 251) for r in result.recipients
    )


def _abandon(session: Session, result: TransactionResult) -> Steps:
    """Reset the session after a refusal (RSET), unless it is closed."""
    if session.state is not State.CLOSED:
        yield from session.rset_quietly()
    return result


def _ended(content: bytes) -> bytes:
    # Content whose last line has no line ending, with its CRLF.
    return content + b"\r\n" if content and not content.endswith(b"\n") else content


def _send_bdat(
    session: Session,
    result: TransactionResult,
    chunks: Iterable[bytes | bytearray | memoryview],
    pipelining: bool,
    single_chunk: bool,
) -> Steps:
    """BDAT chunks (RFC 3030 §2): each the size of what the source gave.

    With PIPELINING up to ``_BDAT_WINDOW`` chunks go out before their
    replies are read, so a large message does not wait a round trip per
    chunk; no chunk is kept once sent, so memory stays bounded. A refused
    chunk stops the rest.
    """
    emitter = session.emitter
    endings = core.LineEncoder()
    outstanding = 0
    # The content's last line gets its CRLF, as over DATA: the octets
    # delivered do not depend on the extensions the server offers.
    ended = True
    for count, raw in enumerate(chunks, 1):
        chunk = endings.encode(raw)
        if single_chunk:
            chunk = _ended(chunk)
        size = len(chunk)
        if size == 0:
            continue
        ended = chunk.endswith(b"\n")
        last = b" LAST" if single_chunk else b""
        session.send(b"BDAT %d%s" % (size, last))
        emitter.write(chunk)
        outstanding += 1
        if not pipelining or outstanding > _BDAT_WINDOW:
            result.data = yield READ
            outstanding -= 1
            if result.data.code != ReplyCode.COMPLETED:
                break
        if count % _DRAIN_EVERY == 0:
            yield DRAIN
    else:
        if not single_chunk or outstanding == 0 and result.data is None:
            session.send(b"BDAT 0 LAST" if ended else b"BDAT 2 LAST")
            if not ended:
                emitter.write(b"\r\n")
            outstanding += 1
    while outstanding:
        reply = yield READ
        outstanding -= 1
        if result.data is None or result.data.code == ReplyCode.COMPLETED:
            result.data = reply
    result.final = result.data
    return result
