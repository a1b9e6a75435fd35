"""A test SMTP server on loopback that stores every message in a Maildir.

It backs ``smtpc send --local-server``: a way to see smtpc deliver without a
mail system at hand. It needs the ``demo`` extra (aiosmtpd).
"""

from __future__ import annotations

import mailbox
import socket
from pathlib import Path
from typing import Any


class _MaildirHandler:
    def __init__(self, maildir: mailbox.Maildir) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # The content exactly as received after un-dot-stuffing, with the
        # envelope in front, as a delivery agent would record it.
        rcpts = ", ".join(envelope.rcpt_tos)
        head = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {rcpts}\r\n"
        key = self.maildir.add(head.encode() + envelope.original_content)
        return f"250 2.0.0 Ok: queued as {key}"


class LocalServer:
    """aiosmtpd on 127.0.0.1 and a free port, storing into ``maildir``."""

    host = "127.0.0.1"

    def __init__(self, maildir: Path) -> None:
        self.maildir = Path(maildir)
        self.port = 0
        self._controller: Any = None

    def __enter__(self) -> LocalServer:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise RuntimeError(
                "--local-server needs aiosmtpd: pip install 'smtpc[demo]'"
            ) from None
        with socket.socket() as probe:
            probe.bind((self.host, 0))
            self.port = probe.getsockname()[1]
        handler = _MaildirHandler(mailbox.Maildir(self.maildir, create=True))
        self._controller = Controller(
            handler,
            hostname=self.host,
            port=self.port,
            server_kwargs={"enable_SMTPUTF8": True},
        )
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
