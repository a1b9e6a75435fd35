"""The exception tree: smtplib's names and attributes first, then smtpc's own.

Every exception is an :class:`SMTPException`, itself an :class:`OSError` as in
smtplib, so code written for smtplib catches what it expects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine.replies import Reply


class SMTPException(OSError):
    """Base class for every error smtpc raises, besides ValueError/TypeError."""


class SMTPNotSupportedError(SMTPException):
    """The server does not offer the extension the command needs.

    Raised before the command is sent; the session is still usable.
    """


class SMTPServerDisconnected(SMTPException, ConnectionError):
    """The session is closed: not connected yet, closed by the server, or lost.

    The client is closed afterwards; call ``connect()`` to start again.
    """


class SMTPTimeoutError(SMTPServerDisconnected, TimeoutError):
    """The server did not answer, or did not accept data, within the timeout.

    The client is closed afterwards: a late reply could not be paired with
    its command any more.
    """


class SMTPResponseException(SMTPException):
    """The server sent a reply code that the operation cannot accept.

    Attributes:
        smtp_code: the reply code.
        smtp_error: the reply text, as bytes (lines joined by ``\\n``) or str.
        reply: the parsed :class:`~smtpc.Reply`, when the error came from one.
    """

    def __init__(self, code: int, msg: bytes | str, reply: Reply | None = None):
        self.smtp_code = code
        self.smtp_error = msg
        self.reply = reply
        self.args = (code, msg)


class SMTPSenderRefused(SMTPResponseException):
    """MAIL FROM was refused; ``sender`` holds the reverse-path.

    The transaction was reset with RSET (or the session closed after a 421).
    """

    def __init__(
        self, code: int, msg: bytes | str, sender: str, reply: Reply | None = None
    ):
        super().__init__(code, msg, reply)
        self.sender = sender
        self.args = (code, msg, sender)


class SMTPRecipientsRefused(SMTPException):
    """Every forward-path was refused; nothing was sent.

    ``recipients`` maps each address to its ``(code, text)`` reply, as in
    smtplib. The transaction was reset with RSET (or the session closed
    after a 421).
    """

    def __init__(self, recipients: dict[str, tuple[int, bytes]]):
        self.recipients = recipients
        self.args = (recipients,)


class SMTPDataError(SMTPResponseException):
    """The server refused the message content (DATA, BDAT or the final reply).

    The transaction was reset with RSET (or the session closed after a 421).
    """


class SMTPConnectError(SMTPResponseException):
    """The greeting was not 220; the client is closed."""


class SMTPHeloError(SMTPResponseException):
    """Neither EHLO nor HELO was accepted; the session is still open."""


class SMTPAuthenticationError(SMTPResponseException):
    """AUTH failed (usually 535: credentials refused); the session is usable.

    ``detail``, when set, is what the mechanism learnt from the server (the
    status of an OAuth error, a SCRAM server error); it is part of ``str()``
    and never holds a credential.
    """

    detail: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.detail is None else f"{text} ({self.detail})"


class SMTPServerProofError(SMTPAuthenticationError):
    """The server could not prove that it knows the password (SCRAM's server
    signature, RFC 5802 §3): it may be an impostor.

    When the proof was wrong the exchange was cancelled with ``*`` and
    ``smtp_code`` is the reply to that (501); the session is usable, but
    should not be trusted with mail. When the server accepted (235) without
    sending a proof, ``smtp_code`` is 235: close the session.
    """


class LocalProtocolError(SMTPException):
    """The caller asked for something the session's current state forbids.

    Nothing was sent; the session is unchanged.
    """


class RemoteProtocolError(SMTPResponseException):
    """The server broke the protocol: a malformed or over-long reply, or an
    AUTH exchange that does not end.

    The client is closed afterwards, since the reply stream can no longer be
    trusted. ``smtp_code`` is 500 for an over-long line, as in smtplib, and
    -1 for a malformed reply.
    """


__all__ = [
    "LocalProtocolError",
    "RemoteProtocolError",
    "SMTPAuthenticationError",
    "SMTPConnectError",
    "SMTPDataError",
    "SMTPException",
    "SMTPHeloError",
    "SMTPNotSupportedError",
    "SMTPRecipientsRefused",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPServerDisconnected",
    "SMTPServerProofError",
    "SMTPTimeoutError",
]
