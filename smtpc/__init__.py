"""smtpc: a small, fast SMTP client, compatible with smtplib.

``import smtpc as smtplib`` works: the same classes, methods, return values
and exceptions. Beyond smtplib: streaming message sources, PIPELINING and
CHUNKING, per-recipient results (:meth:`SMTP.deliver`), and a core that
sends through one fixed-size buffer.
"""

import logging
import re

from .client import (
    CRLF,
    LMTP,
    LMTP_PORT,
    SMTP,
    SMTP_PORT,
    SMTP_SSL,
    SMTP_SSL_PORT,
    bCRLF,
)
from .engine.commands import DSN, quoteaddr
from .engine.commands import addr_only as _addr_only  # noqa: F401 - as smtplib
from .engine.replies import Reply, ReplyCode
from .engine.transaction import RecipientResult, TransactionResult
from .errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPServerProofError,
    SMTPTimeoutError,
)

__version__ = "0.1.0"

# The longest reply line accepted; programs may raise it, as with smtplib.
_MAXLINE = 8192
_MAXCHALLENGE = 5
OLDSTYLE_AUTH = re.compile(r"auth=(.*)", re.I)

logging.getLogger("smtpc").addHandler(logging.NullHandler())


# Loaded on first use, so that ``import smtpc`` does not import asyncio.
_LAZY = {
    "AsyncSMTP": ("aio", "SMTP"),
    "AsyncLMTP": ("aio", "LMTP"),
    "Pool": ("pool", "Pool"),
    "BulkSender": ("pool", "BulkSender"),
    "BackgroundSender": ("pool", "BackgroundSender"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fix_eols(data: str) -> str:
    return re.sub(r"(?:\r\n|\n|\r(?!\n))", CRLF, data)


def _quote_periods(bindata: bytes) -> bytes:
    return re.sub(rb"(?m)^\.", b"..", bindata)


def quotedata(data: str) -> str:
    """Line endings to CRLF and leading dots doubled (RFC 5321 §4.5.2), as
    smtplib's ``quotedata``. Sending uses the streaming core instead."""
    return re.sub(r"(?m)^\.", "..", _fix_eols(data))


__all__ = [
    "CRLF",
    "DSN",
    "LMTP",
    "LMTP_PORT",
    "LocalProtocolError",
    "RecipientResult",
    "RemoteProtocolError",
    "Reply",
    "ReplyCode",
    "SMTP",
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
    "SMTP_PORT",
    "SMTP_SSL",
    "SMTP_SSL_PORT",
    "TransactionResult",
    "bCRLF",
    "quoteaddr",
    "quotedata",
]
