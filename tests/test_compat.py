"""smtpc is a drop-in replacement for smtplib: the same calls give the same outcome.

Most tests run a scenario with the module under test (``smtp_module``: smtplib, then
smtpc), assert the values a correct client must produce, and, for smtpc, run the same
scenario with smtplib and assert both outcomes are equal. Tests marked as smtpc-only
cover what smtpc does differently on purpose or adds.
"""

from __future__ import annotations

import base64
import email.message
import importlib
import io
import re
import smtplib
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import (
    AUTH_PASSWORD,
    AUTH_USER,
    SERVER_NAME,
    RecordingHandler,
    ScriptedServer,
    SinkServer,
    SMTPServer,
)

SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.org"
MESSAGE = b"From: sender@example.com\r\nSubject: hi\r\n\r\nHello.\r\n.dot\r\n"
EXCEPTIONS = [
    "SMTPException",
    "SMTPNotSupportedError",
    "SMTPServerDisconnected",
    "SMTPResponseException",
    "SMTPSenderRefused",
    "SMTPRecipientsRefused",
    "SMTPDataError",
    "SMTPConnectError",
    "SMTPHeloError",
    "SMTPAuthenticationError",
]
EHLO_REPLY = b"250-mx.example.net\r\n250 8BITMIME\r\n"


@pytest.fixture(params=["smtplib", "smtpc"])
def smtp_module(request: pytest.FixtureRequest) -> ModuleType:
    """The module under test, used as ``smtplib``."""
    return importlib.import_module(request.param)


@pytest.fixture
def smtpc() -> ModuleType:
    return importlib.import_module("smtpc")


def agree(smtp_module: ModuleType, scenario: Callable[[ModuleType], Any]) -> Any:
    """Run ``scenario`` with the module; for smtpc, check smtplib gives the same."""
    outcome = scenario(smtp_module)
    if smtp_module is not smtplib:
        assert outcome == scenario(smtplib), "smtpc and smtplib disagree"
    return outcome


def raised(
    module: ModuleType, name: str, call: Callable[[], object]
) -> tuple[Any, ...]:
    """Call, expect the module's exception ``name``; return what callers can see."""
    with pytest.raises(getattr(module, name)) as info:
        call()
    error = info.value
    attributes = ("smtp_code", "smtp_error", "sender", "recipients")
    return (type(error).__name__, *(getattr(error, a, None) for a in attributes))


def crlf(data: bytes) -> bytes:
    """Line endings made CRLF, and a final CRLF added if missing."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def commands(server: ScriptedServer) -> list[bytes]:
    """The command lines the client sent, verbs upper-cased."""
    return [line.rstrip(b"\r\n").split(b" ", 1)[0].upper() for line in server.lines]


# --- module names ------------------------------------------------------------


def test_constants(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        auth = m.OLDSTYLE_AUTH
        return (m.SMTP_PORT, m.SMTP_SSL_PORT, m.LMTP_PORT, m.CRLF, m.bCRLF, m._MAXLINE,
                auth.pattern, auth.flags)  # fmt: skip

    outcome = agree(smtp_module, scenario)
    assert outcome[:6] == (25, 465, 2003, "\r\n", b"\r\n", 8192)
    assert smtp_module.OLDSTYLE_AUTH.match("AUTH=PLAIN LOGIN").group(1) == "PLAIN LOGIN"


def test_exception_tree(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> list[tuple[str, str, bool]]:
        classes = [(name, getattr(m, name)) for name in EXCEPTIONS]
        return [(a, b, issubclass(x, y)) for a, x in classes for b, y in classes]

    agree(smtp_module, scenario)
    for name in EXCEPTIONS:
        assert issubclass(getattr(smtp_module, name), smtp_module.SMTPException)
    assert issubclass(smtp_module.SMTPException, OSError)
    assert issubclass(smtp_module.SMTPSenderRefused, smtp_module.SMTPResponseException)
    assert not issubclass(
        smtp_module.SMTPRecipientsRefused, smtp_module.SMTPResponseException
    )


def test_exception_attributes(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        response = m.SMTPResponseException(554, b"5.7.1 no")
        sender = m.SMTPSenderRefused(552, b"5.3.4 too big", SENDER)
        recipients = m.SMTPRecipientsRefused({RECIPIENT: (550, b"unknown")})
        return (
            (response.smtp_code, response.smtp_error, response.args),
            (sender.smtp_code, sender.smtp_error, sender.sender, sender.args),
            (recipients.recipients, recipients.args),
            m.SMTPDataError(554, b"x").args,
        )

    outcome = agree(smtp_module, scenario)
    assert outcome[0] == (554, b"5.7.1 no", (554, b"5.7.1 no"))
    assert outcome[1][2] == SENDER
    assert outcome[2][0] == {RECIPIENT: (550, b"unknown")}


@pytest.mark.parametrize(
    ("address", "quoted"),
    [
        ("a@example.com", "<a@example.com>"),
        ("<a@example.com>", "<a@example.com>"),
        ("Ann Example <a@example.com>", "<a@example.com>"),
        ('"Ann, Ex." <a@example.com>', "<a@example.com>"),
        ("", "<>"),
        ("<>", "<>"),
    ],
)
def test_quoteaddr(smtp_module: ModuleType, address: str, quoted: str) -> None:
    assert agree(smtp_module, lambda m: m.quoteaddr(address)) == quoted


def test_quotedata(smtp_module: ModuleType) -> None:
    text = ".a\nb\r.c\r\nd"
    assert agree(smtp_module, lambda m: m.quotedata(text)) == "..a\r\nb\r\n..c\r\nd"


def test_classes_and_defaults(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        client = m.SMTP(local_hostname="client.example.com")
        lmtp = m.LMTP(local_hostname="client.example.com")
        return (
            issubclass(m.SMTP_SSL, m.SMTP),
            issubclass(m.LMTP, m.SMTP),
            (m.SMTP.default_port, m.SMTP_SSL.default_port),
            (m.SMTP.ehlo_msg, m.LMTP.ehlo_msg),
            (client.debuglevel, client.helo_resp, client.ehlo_resp, client.does_esmtp),
            (client.esmtp_features, client.command_encoding, client.local_hostname),
            lmtp.local_hostname,
        )

    assert agree(smtp_module, scenario) == (
        True,
        True,
        (25, 465),
        ("ehlo", "lhlo"),
        (0, None, None, False),
        ({}, "ascii", "client.example.com"),
        "client.example.com",
    )


def test_default_local_hostname(smtp_module: ModuleType) -> None:
    assert agree(smtp_module, lambda m: m.SMTP().local_hostname)


# --- session basics ----------------------------------------------------------


def test_not_connected_raises_server_disconnected(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> list[tuple[Any, ...]]:
        client = m.SMTP()
        calls = [
            client.noop,
            client.ehlo,
            lambda: client.sendmail(SENDER, RECIPIENT, b""),
        ]
        return [raised(m, "SMTPServerDisconnected", call) for call in calls]

    assert agree(smtp_module, scenario)[0][0] == "SMTPServerDisconnected"


def test_connect_returns_greeting(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[int, bytes]:
        client = m.SMTP()
        try:
            return client.connect(smtpd.host, smtpd.port)
        finally:
            client.close()

    code, text = agree(smtp_module, scenario)
    assert code == 220
    assert text.startswith(SERVER_NAME.encode() + b" ")


def test_ehlo_and_extensions(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            reply = client.ehlo("client.example.com")
            return (
                reply,
                client.ehlo_resp,
                client.helo_resp,
                client.does_esmtp,
                client.esmtp_features,
                [client.has_extn(k) for k in ("SIZE", "8bitmime", "StartTLS", "auth")],
            )

    reply, ehlo_resp, helo_resp, does_esmtp, features, has = agree(
        smtp_module, scenario
    )
    assert reply == (250, ehlo_resp)
    assert ehlo_resp.split(b"\n")[0] == SERVER_NAME.encode()
    assert helo_resp is None
    assert does_esmtp is True
    assert features == {"size": "33554432", "8bitmime": "", "smtputf8": "", "help": ""}
    assert has == [True, True, False, False]


def test_helo(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            reply = client.helo("client.example.com")
            return reply, client.helo_resp, client.ehlo_resp, client.does_esmtp

    assert agree(smtp_module, scenario) == (
        (250, SERVER_NAME.encode()),
        SERVER_NAME.encode(),
        None,
        False,
    )


def test_simple_commands(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> list[Any]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            return [
                client.noop(),
                client.rset(),
                client.verify("someone@example.org"),
                client.vrfy("refuse@example.org"),
                client.expn("list@example.org"),
                client.docmd("NOOP"),
                client.docmd("XYZZY", "plugh"),
                client.help(),
            ]

    outcome = agree(smtp_module, scenario)
    assert outcome[:2] == [(250, b"OK"), (250, b"OK")]
    assert outcome[2][0] == 252
    assert outcome[3] == (550, b"5.1.1 Recipient address rejected")
    assert outcome[4] == (502, b"EXPN not implemented")
    assert outcome[5] == (250, b"OK")
    assert outcome[6][0] == 500
    assert outcome[7].startswith(b"Supported commands:")


def test_putcmd_send_getreply(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> list[tuple[int, bytes]]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            client.putcmd("NOOP")
            first = client.getreply()
            client.send("NOOP hello\r\n")
            return [first, client.getreply()]

    assert agree(smtp_module, scenario) == [(250, b"OK"), (250, b"OK")]


def test_quit_then_commands_raise(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with closing(m.SMTP(smtpd.host, smtpd.port)) as client:
            client.ehlo()
            reply = client.quit()
            state = (
                client.ehlo_resp,
                client.helo_resp,
                client.does_esmtp,
                client.esmtp_features,
            )
            return reply, state, raised(m, "SMTPServerDisconnected", client.noop)

    reply, state, error = agree(smtp_module, scenario)
    assert reply == (221, b"Bye")
    assert state == (None, None, False, {})
    assert error[0] == "SMTPServerDisconnected"


def test_close_twice_then_reconnect(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with closing(m.SMTP(smtpd.host, smtpd.port)) as client:
            client.close()
            client.close()
            error = raised(m, "SMTPServerDisconnected", client.noop)
            code, _ = client.connect(smtpd.host, smtpd.port)
            return error, code, client.noop()

    assert agree(smtp_module, scenario)[1:] == (220, (250, b"OK"))


def test_context_manager_sends_quit(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        server = ScriptedServer(b"220 hi\r\n", [b"250 OK\r\n", b"221 Bye\r\n"])
        try:
            with m.SMTP(server.host, server.port) as client:
                client.noop()
            error = raised(m, "SMTPServerDisconnected", client.noop)
        finally:
            server.stop()
        return commands(server), error

    assert agree(smtp_module, scenario)[0] == [b"NOOP", b"QUIT"]


def test_timeout_zero_is_refused(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> str:
        with pytest.raises(ValueError) as info:
            m.SMTP(smtpd.host, smtpd.port, timeout=0)
        return type(info.value).__name__

    assert agree(smtp_module, scenario) == "ValueError"


def test_silent_server_times_out(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> bool:
        server = ScriptedServer(b"", [])
        try:
            with pytest.raises(m.SMTPException) as info:
                m.SMTP(server.host, server.port, timeout=0.2)
        finally:
            server.stop()
        # smtplib reports a timeout while reading a reply as a disconnection.
        return isinstance(info.value, m.SMTPServerDisconnected)

    assert agree(smtp_module, scenario) is True


def test_source_address(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            source = probe.getsockname()
        with m.SMTP(smtpd.host, smtpd.port, source_address=source) as client:
            return client.source_address == source, client.noop()

    assert agree(smtp_module, scenario) == (True, (250, b"OK"))


# --- hostile and unusual servers ---------------------------------------------


def test_greeting_refused_raises_connect_error(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        server = ScriptedServer(b"554 5.7.1 No service here\r\n", [])
        try:
            return raised(
                m, "SMTPConnectError", lambda: m.SMTP(server.host, server.port)
            )
        finally:
            server.stop()

    outcome = agree(smtp_module, scenario)
    assert outcome[1:3] == (554, b"5.7.1 No service here")


def test_ehlo_refused_falls_back_to_helo(smtp_module: ModuleType) -> None:
    replies = [b"502 no\r\n", b"250 mx\r\n", b"250 OK\r\n", b"250 OK\r\n"]
    replies += [b"354 go\r\n", b"250 queued\r\n", b"221 Bye\r\n"]

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        server = ScriptedServer(b"220 mx\r\n", replies)
        try:
            with m.SMTP(
                server.host, server.port, local_hostname="c.example.com"
            ) as client:
                refused = client.sendmail(SENDER, [RECIPIENT], MESSAGE)
                state = client.does_esmtp, client.helo_resp, client.ehlo_resp
        finally:
            server.stop()
        return refused, state, commands(server), server.lines[2].lower()

    refused, state, verbs, mail = agree(smtp_module, scenario)
    assert refused == {}
    assert state == (False, b"mx", b"no")
    assert verbs[:4] == [b"EHLO", b"HELO", b"MAIL", b"RCPT"]
    assert mail == b"mail from:<sender@example.com>\r\n"


def test_helo_refused_raises_helo_error(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        server = ScriptedServer(b"220 mx\r\n", [b"500 what\r\n", b"550 go away\r\n"])
        try:
            with closing(m.SMTP(server.host, server.port)) as client:
                error = raised(
                    m, "SMTPHeloError", lambda: client.sendmail(SENDER, RECIPIENT, b"x")
                )
        finally:
            server.stop()
        return error

    assert agree(smtp_module, scenario)[1:3] == (550, b"go away")


def test_disconnect_during_ehlo(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        server = ScriptedServer(b"220 mx\r\n", [None])
        try:
            with closing(m.SMTP(server.host, server.port)) as client:
                return raised(m, "SMTPServerDisconnected", client.ehlo)
        finally:
            server.stop()

    assert agree(smtp_module, scenario)[0] == "SMTPServerDisconnected"


def test_multiline_reply_is_joined(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[int, bytes]:
        reply = b"250-first\r\n250-second line\r\n250 third\r\n"
        server = ScriptedServer(b"220 mx\r\n", [reply])
        try:
            with closing(m.SMTP(server.host, server.port)) as client:
                outcome = client.noop()
        finally:
            server.stop()
        return outcome

    assert agree(smtp_module, scenario) == (250, b"first\nsecond line\nthird")


def test_421_on_mail_closes_session(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        server = ScriptedServer(
            b"220 mx\r\n", [EHLO_REPLY, b"421 4.3.2 shutting down\r\n"]
        )
        try:
            with closing(m.SMTP(server.host, server.port)) as client:
                error = raised(
                    m,
                    "SMTPSenderRefused",
                    lambda: client.sendmail(SENDER, RECIPIENT, b"x"),
                )
                after = raised(m, "SMTPServerDisconnected", client.noop)
        finally:
            server.stop()
        return error, after, commands(server)

    error, after, verbs = agree(smtp_module, scenario)
    assert error[1:4] == (421, b"4.3.2 shutting down", SENDER)
    assert verbs == [b"EHLO", b"MAIL"]


def test_over_long_reply_line_is_refused(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> str:
        server = ScriptedServer(b"220 mx\r\n", [b"250 " + b"x" * 9000 + b"\r\n"])
        try:
            client = m.SMTP(server.host, server.port)
            with closing(client), pytest.raises(m.SMTPException):
                client.noop()
        finally:
            server.stop()
        return "refused"

    assert agree(smtp_module, scenario) == "refused"


def test_newline_in_command_is_refused(smtp_module: ModuleType) -> None:
    def scenario(m: ModuleType) -> list[bytes]:
        replies = [EHLO_REPLY, b"250 OK\r\n", b"221 Bye\r\n"]
        server = ScriptedServer(b"220 mx\r\n", replies)
        try:
            with m.SMTP(server.host, server.port) as client:
                client.ehlo()
                for bad in ("NOOP\r\nRSET", "NOOP\nRSET", "NOOP\rRSET"):
                    with pytest.raises(ValueError):
                        client.docmd(bad)
                    with pytest.raises(ValueError):
                        client.docmd("NOOP", bad)
                client.noop()
        finally:
            server.stop()
        return commands(server)

    assert agree(smtp_module, scenario) == [b"EHLO", b"NOOP", b"QUIT"]


# --- mail transactions -------------------------------------------------------


def test_mail_rcpt_data(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            client.ehlo()
            replies = [
                client.mail(SENDER),
                client.rcpt(RECIPIENT),
                client.data(MESSAGE),
            ]
        return replies, smtpd.envelopes[-1]

    replies, envelope = agree(smtp_module, scenario)
    assert replies == [(250, b"OK")] * 3
    assert (envelope.mail_from, envelope.rcpt_tos) == (SENDER, [RECIPIENT])
    assert envelope.original_content == MESSAGE


def test_data_refused_before_content(
    smtp_module: ModuleType, smtpd: SMTPServer
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            client.ehlo()
            return raised(m, "SMTPDataError", lambda: client.data(MESSAGE))

    assert agree(smtp_module, scenario)[1:3] == (503, b"Error: need RCPT command")


@pytest.mark.parametrize(
    "message",
    [MESSAGE, MESSAGE.decode(), b"no final newline", b".\r\n..\r\n.\r\n"],
    ids=["bytes", "str", "unterminated", "dots"],
)
def test_sendmail(smtp_module: ModuleType, smtpd: SMTPServer, message: Any) -> None:
    declared: dict[str, list[str]] = {}

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            refused = client.sendmail(SENDER, [RECIPIENT, "two@example.net"], message)
        envelope = smtpd.envelopes[-1]
        declared[m.__name__] = envelope.mail_options
        return refused, envelope.mail_from, envelope.rcpt_tos, envelope.original_content

    refused, mail_from, rcpt_tos, content = agree(smtp_module, scenario)
    data = message.encode() if isinstance(message, str) else message
    assert refused == {}
    assert mail_from == SENDER
    assert rcpt_tos == [RECIPIENT, "two@example.net"]
    assert content == crlf(data)
    # smtplib declares the length of what it was given; smtpc the octets it
    # sends, line endings made CRLF (RFC 1870 §4).
    size = len(data) if smtp_module.__name__ == "smtplib" else len(crlf(data))
    assert declared[smtp_module.__name__] == [f"SIZE={size}"]


def test_smtpc_sends_an_empty_message_as_empty(smtpc: ModuleType, smtpd: Any) -> None:
    # smtplib adds an empty line; after DATA's 354 the client is at the start
    # of a line, so "." alone ends an empty message (RFC 5321 §4.1.1.4).
    with smtpc.SMTP(smtpd.host, smtpd.port) as client:
        assert client.sendmail(SENDER, [RECIPIENT], b"") == {}
    assert smtpd.envelopes[-1].original_content == b""


def test_sendmail_to_one_address_as_str(
    smtp_module: ModuleType, smtpd: SMTPServer
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            refused = client.sendmail(SENDER, RECIPIENT, MESSAGE)
        return refused, smtpd.envelopes[-1].rcpt_tos

    assert agree(smtp_module, scenario) == ({}, [RECIPIENT])


def test_sendmail_some_recipients_refused(
    smtp_module: ModuleType, smtpd: SMTPServer
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        to = ["refuse@example.org", RECIPIENT, "defer@example.net"]
        with m.SMTP(smtpd.host, smtpd.port) as client:
            refused = client.sendmail(SENDER, to, MESSAGE)
        return refused, smtpd.envelopes[-1].rcpt_tos

    refused, accepted = agree(smtp_module, scenario)
    assert refused == {
        "refuse@example.org": (550, b"5.1.1 Recipient address rejected"),
        "defer@example.net": (451, b"4.3.0 Try again later"),
    }
    assert accepted == [RECIPIENT]


def test_all_recipients_refused(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        to = ["refuse@example.org", "defer@example.net"]
        with m.SMTP(smtpd.host, smtpd.port) as client:
            error = raised(
                m, "SMTPRecipientsRefused", lambda: client.sendmail(SENDER, to, MESSAGE)
            )
            # The transaction was reset: a new one goes through.
            client.sendmail(SENDER, RECIPIENT, MESSAGE)
        return error, smtpd.envelopes[-1].rcpt_tos

    error, accepted = agree(smtp_module, scenario)
    assert error[4] == {
        "refuse@example.org": (550, b"5.1.1 Recipient address rejected"),
        "defer@example.net": (451, b"4.3.0 Try again later"),
    }
    assert accepted == [RECIPIENT]


def test_sender_refused(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        sender = "refuse@example.com"
        with m.SMTP(smtpd.host, smtpd.port) as client:
            error = raised(
                m,
                "SMTPSenderRefused",
                lambda: client.sendmail(sender, RECIPIENT, MESSAGE),
            )
            return error, client.noop()

    error, noop = agree(smtp_module, scenario)
    assert error == (
        "SMTPSenderRefused",
        552,
        b"5.3.4 Sender refused",
        "refuse@example.com",
        None,
    )
    assert noop == (250, b"OK")


def test_data_refused(smtp_module: ModuleType, smtp_server: Any) -> None:
    server = smtp_server(handler=RecordingHandler(data_reply="554 5.6.0 Rejected"))

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(server.host, server.port) as client:
            error = raised(
                m, "SMTPDataError", lambda: client.sendmail(SENDER, RECIPIENT, MESSAGE)
            )
            return error, client.noop()

    error, noop = agree(smtp_module, scenario)
    assert error[:3] == ("SMTPDataError", 554, b"5.6.0 Rejected")
    assert noop == (250, b"OK")


def test_mail_and_rcpt_options(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            client.sendmail(SENDER, RECIPIENT, MESSAGE, mail_options=["BODY=8BITMIME"])
            options = smtpd.envelopes[-1].mail_options
            # aiosmtpd knows no RCPT parameter.
            notify = ["NOTIFY=NEVER"]
            error = raised(
                m,
                "SMTPRecipientsRefused",
                lambda: client.sendmail(
                    SENDER, RECIPIENT, MESSAGE, rcpt_options=notify
                ),
            )
            return options, error

    options, error = agree(smtp_module, scenario)
    assert sorted(options) == ["BODY=8BITMIME", f"SIZE={len(MESSAGE)}"]
    assert error[4] == {
        RECIPIENT: (555, b"RCPT TO parameters not recognized or not implemented")
    }


def test_smtputf8_option_needs_server_support(
    smtp_module: ModuleType, smtp_server: Any
) -> None:
    server = smtp_server(enable_SMTPUTF8=False)

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(server.host, server.port) as client:
            client.ehlo()
            return raised(
                m, "SMTPNotSupportedError", lambda: client.mail(SENDER, ["SMTPUTF8"])
            )

    assert agree(smtp_module, scenario)[0] == "SMTPNotSupportedError"


def test_non_ascii_str_message_is_refused(
    smtp_module: ModuleType, smtpd: SMTPServer
) -> None:
    def scenario(m: ModuleType) -> tuple[str, int]:
        with (
            m.SMTP(smtpd.host, smtpd.port) as client,
            pytest.raises(UnicodeEncodeError),
        ):
            client.sendmail(SENDER, RECIPIENT, "Subject: caf\u00e9\r\n\r\n")
        return "refused", len(smtpd.envelopes)

    assert agree(smtp_module, scenario) == ("refused", 0)


# --- send_message ------------------------------------------------------------


def make_message() -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = "Ann <ann@example.com>"
    message["To"] = "bob@example.org, Carol <carol@example.org>"
    message["Cc"] = "dave@example.net"
    message["Bcc"] = "eve@example.net"
    message["Subject"] = "Greetings"
    message.set_content("Hello.\n.leading dot\n")
    return message


def test_send_message(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            refused = client.send_message(make_message())
        return refused, smtpd.envelopes[-1]

    refused, envelope = agree(smtp_module, scenario)
    assert refused == {}
    assert envelope.mail_from == "ann@example.com"
    assert envelope.rcpt_tos == [
        "bob@example.org",
        "carol@example.org",
        "eve@example.net",
        "dave@example.net",
    ]
    assert b"Bcc" not in envelope.original_content
    assert envelope.original_content.endswith(b"\r\nHello.\r\n.leading dot\r\n")


def test_send_message_explicit_envelope(
    smtp_module: ModuleType, smtpd: SMTPServer
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            client.send_message(make_message(), SENDER, [RECIPIENT])
        envelope = smtpd.envelopes[-1]
        return envelope.mail_from, envelope.rcpt_tos

    assert agree(smtp_module, scenario) == (SENDER, [RECIPIENT])


def test_smtpc_send_message_without_from_raises_before_sending(
    smtpc: ModuleType, smtpd: SMTPServer
) -> None:
    # smtplib would send MAIL FROM:<None>.
    message = make_message()
    del message["From"]
    with smtpc.SMTP(smtpd.host, smtpd.port) as client:
        with pytest.raises(ValueError, match="no From field"):
            client.send_message(message)
        client.send_message(message, SENDER)
    assert [e.mail_from for e in smtpd.envelopes] == [SENDER]


def test_send_message_international(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        message = make_message()
        message.replace_header("To", "j\u00f6rg@example.org")
        with m.SMTP(smtpd.host, smtpd.port) as client:
            client.send_message(message)
        envelope = smtpd.envelopes[-1]
        return envelope.rcpt_tos, envelope.mail_options, envelope.original_content

    rcpt_tos, options, content = agree(smtp_module, scenario)
    assert rcpt_tos == ["j\u00f6rg@example.org", "eve@example.net", "dave@example.net"]
    assert "SMTPUTF8" in options
    assert "BODY=8BITMIME" in options
    assert "To: j\u00f6rg@example.org\r\n".encode() in content


def test_send_message_international_needs_smtputf8(
    smtp_module: ModuleType, smtp_server: Any
) -> None:
    server = smtp_server(enable_SMTPUTF8=False)

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        message = make_message()
        message.replace_header("To", "j\u00f6rg@example.org")
        with m.SMTP(server.host, server.port) as client:
            error = raised(
                m, "SMTPNotSupportedError", lambda: client.send_message(message)
            )
        return error, len(server.envelopes)

    assert agree(smtp_module, scenario) == (
        ("SMTPNotSupportedError", None, None, None, None),
        0,
    )


# --- AUTH --------------------------------------------------------------------


@pytest.fixture
def auth_server(smtp_server: Any) -> SMTPServer:
    return smtp_server(auth=True)


def test_login_prefers_cram_md5(
    smtp_module: ModuleType, auth_server: SMTPServer
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(auth_server.host, auth_server.port) as client:
            client.ehlo()
            mechanisms = sorted(client.esmtp_features["auth"].split())
            reply = client.login(AUTH_USER, AUTH_PASSWORD)
        return mechanisms, reply, auth_server.handler.logins[-1]

    mechanisms, reply, login = agree(smtp_module, scenario)
    assert mechanisms == ["CRAM-MD5", "LOGIN", "PLAIN"]
    assert reply == (235, b"2.7.0 Authentication successful")
    assert login == ("CRAM-MD5", AUTH_USER)


@pytest.mark.parametrize("initial_response_ok", [True, False])
def test_login_plain(
    smtp_module: ModuleType, smtp_server: Any, initial_response_ok: bool
) -> None:
    server = smtp_server(auth=True, auth_exclude_mechanism=["CRAM-MD5"])

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(server.host, server.port) as client:
            reply = client.login(
                AUTH_USER, AUTH_PASSWORD, initial_response_ok=initial_response_ok
            )
            client.sendmail(SENDER, RECIPIENT, MESSAGE)
        return reply, server.handler.logins[-1], server.envelopes[-1].rcpt_tos

    assert agree(smtp_module, scenario) == (
        (235, b"2.7.0 Authentication successful"),
        ("PLAIN", AUTH_USER),
        [RECIPIENT],
    )


def test_login_wrong_password(smtp_module: ModuleType, auth_server: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(auth_server.host, auth_server.port) as client:
            return raised(
                m, "SMTPAuthenticationError", lambda: client.login(AUTH_USER, "wrong")
            )

    assert agree(smtp_module, scenario) == (
        "SMTPAuthenticationError",
        535,
        b"5.7.8 Authentication credentials invalid",
        None,
        None,
    )


def test_login_without_auth_offered(smtp_module: ModuleType, smtpd: SMTPServer) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            return raised(
                m,
                "SMTPNotSupportedError",
                lambda: client.login(AUTH_USER, AUTH_PASSWORD),
            )

    assert agree(smtp_module, scenario)[0] == "SMTPNotSupportedError"


@pytest.mark.parametrize(
    ("mechanism", "authobject", "initial_response_ok"),
    [
        ("PLAIN", "auth_plain", True),
        ("plain", "auth_plain", False),
        ("LOGIN", "auth_login", True),
        ("LOGIN", "auth_login", False),
        ("CRAM-MD5", "auth_cram_md5", True),
    ],
)
def test_auth_hook(
    smtp_module: ModuleType,
    auth_server: SMTPServer,
    mechanism: str,
    authobject: str,
    initial_response_ok: bool,
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(auth_server.host, auth_server.port) as client:
            client.ehlo()
            client.user, client.password = AUTH_USER, AUTH_PASSWORD
            reply = client.auth(
                mechanism,
                getattr(client, authobject),
                initial_response_ok=initial_response_ok,
            )
        return reply, auth_server.handler.logins[-1]

    assert agree(smtp_module, scenario) == (
        (235, b"2.7.0 Authentication successful"),
        (mechanism.upper(), AUTH_USER),
    )


def test_auth_with_own_authobject(
    smtp_module: ModuleType, auth_server: SMTPServer
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        challenges: list[bytes | None] = []

        def answer(challenge: bytes | None = None) -> str | None:
            challenges.append(challenge)
            return None if challenge is None else f"\0{AUTH_USER}\0{AUTH_PASSWORD}"

        with m.SMTP(auth_server.host, auth_server.port) as client:
            client.ehlo()
            return client.auth("PLAIN", answer), challenges

    reply, challenges = agree(smtp_module, scenario)
    assert reply[0] == 235
    assert challenges == [None, b""]


# --- TLS ---------------------------------------------------------------------


def test_starttls(
    smtp_module: ModuleType, smtp_server: Any, client_tls_context: ssl.SSLContext
) -> None:
    server = smtp_server(starttls=True)

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(server.host, server.port) as client:
            client.ehlo()
            offered = client.has_extn("starttls")
            reply = client.starttls(context=client_tls_context)
            forgotten = client.ehlo_resp, client.does_esmtp, client.esmtp_features
            refused = client.sendmail(SENDER, RECIPIENT, MESSAGE)
            offered_again = client.has_extn("starttls")
        return offered, reply, forgotten, refused, offered_again, server.envelopes[-1]

    offered, reply, forgotten, refused, offered_again, envelope = agree(
        smtp_module, scenario
    )
    assert offered is True
    assert reply == (220, b"Ready to start TLS")
    assert forgotten == (None, False, {})
    assert refused == {}
    assert offered_again is False
    assert envelope.original_content == MESSAGE


def test_starttls_not_offered(
    smtp_module: ModuleType, smtpd: SMTPServer, client_tls_context: ssl.SSLContext
) -> None:
    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtpd.host, smtpd.port) as client:
            error = raised(
                m,
                "SMTPNotSupportedError",
                lambda: client.starttls(context=client_tls_context),
            )
            return error, client.noop()

    assert agree(smtp_module, scenario)[1] == (250, b"OK")


def test_smtp_ssl(
    smtp_module: ModuleType, smtp_server: Any, client_tls_context: ssl.SSLContext
) -> None:
    server = smtp_server(implicit_tls=True)

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP_SSL(server.host, server.port, context=client_tls_context) as client:
            ehlo_code = client.ehlo()[0]
            refused = client.sendmail(SENDER, RECIPIENT, MESSAGE)
        return ehlo_code, refused, server.envelopes[-1].original_content

    assert agree(smtp_module, scenario) == (250, {}, MESSAGE)


def test_smtp_ssl_refuses_untrusted_certificate(
    smtp_module: ModuleType, smtp_server: Any
) -> None:
    server = smtp_server(implicit_tls=True)
    context = ssl.create_default_context()
    with pytest.raises(OSError) as info:
        smtp_module.SMTP_SSL(server.host, server.port, context=context)
    error = info.value
    assert isinstance(error, ssl.SSLCertVerificationError) or isinstance(
        error.__cause__, ssl.SSLCertVerificationError
    )


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="smtplib has no keyfile/certfile from 3.12"
)
def test_smtp_ssl_context_and_keyfile_exclusive(
    smtp_module: ModuleType, client_tls_context: ssl.SSLContext
) -> None:
    def scenario(m: ModuleType) -> str:
        with pytest.raises(ValueError):
            m.SMTP_SSL(context=client_tls_context, keyfile="key.pem")
        return "refused"

    assert agree(smtp_module, scenario) == "refused"


# --- LMTP and Postfix's smtp-sink --------------------------------------------


def test_lmtp_says_lhlo(smtp_module: ModuleType) -> None:
    replies = [
        b"250-lmtp.example.net\r\n250 PIPELINING\r\n",
        b"250 OK\r\n",
        b"250 OK\r\n",
    ]
    replies += [b"354 go\r\n", b"250 2.0.0 delivered\r\n", b"221 Bye\r\n"]

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        server = ScriptedServer(b"220 lmtp.example.net LMTP\r\n", replies)
        try:
            with m.LMTP(server.host, server.port) as client:
                refused = client.sendmail(SENDER, [RECIPIENT], MESSAGE)
        finally:
            server.stop()
        return refused, commands(server)

    refused, verbs = agree(smtp_module, scenario)
    assert refused == {}
    assert verbs[:3] == [b"LHLO", b"MAIL", b"RCPT"]


@pytest.mark.postfix
def test_smtp_sink(smtp_module: ModuleType, smtp_sink: SinkServer) -> None:
    message = b"Subject: sink\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n"

    def scenario(m: ModuleType) -> tuple[Any, ...]:
        with m.SMTP(smtp_sink.host, smtp_sink.port) as client:
            client.ehlo()
            features = sorted(client.esmtp_features)
            refused = client.sendmail(SENDER, [RECIPIENT, "two@example.net"], message)
        return features, refused

    features, refused = agree(smtp_module, scenario)
    assert "pipelining" in features
    assert refused == {}
    for stored in smtp_sink.messages(1 if smtp_module is smtplib else 2):
        assert stored.mail_args.startswith(f"<{SENDER}>")
        assert stored.rcpt_args == [f"<{RECIPIENT}>", "<two@example.net>"]
        assert stored.content == message


@pytest.mark.postfix
def test_lmtp_with_smtp_sink(smtp_module: ModuleType, start_smtp_sink: Any) -> None:
    sink = start_smtp_sink("-L")
    with smtp_module.LMTP(sink.host, sink.port) as client:
        refused = client.sendmail(SENDER, [RECIPIENT], MESSAGE)
    assert refused == {}
    assert sink.messages(1)[0].content == MESSAGE


# --- what smtpc does differently on purpose ----------------------------------


# smtplib passes addresses through email.utils.parseaddr, which silently turns
# "x\nRCPT TO:<victim@example.net>@example.com" into <victim@example.net>; smtpc
# refuses the address instead.
@pytest.mark.parametrize(
    "bad", ["\r", "\n", "\r\n", "\0"], ids=["CR", "LF", "CRLF", "NUL"]
)
@pytest.mark.parametrize("where", ["sender", "recipient"])
@pytest.mark.parametrize(
    "template",
    ["x{}y@example.com", "x{}RCPT TO:<victim@example.net>@example.com"],
    ids=["plain", "injection"],
)
def test_smtpc_refuses_control_characters_before_sending(
    smtpc: ModuleType, scripted_server: Any, template: str, where: str, bad: str
) -> None:
    replies = [EHLO_REPLY, *[b"250 OK\r\n"] * 3, b"354 go\r\n", b"250 OK\r\n"]
    server = scripted_server(b"220 mx\r\n", *replies)
    address = template.format(bad)
    sender, recipient = (address, RECIPIENT) if where == "sender" else (SENDER, address)
    client = smtpc.SMTP(server.host, server.port)
    with closing(client), pytest.raises(ValueError):
        client.sendmail(sender, [RECIPIENT, recipient], MESSAGE)
    assert not {b"MAIL", b"RCPT", b"DATA"} & set(commands(server))


def test_smtpc_refuses_nul_in_command(smtpc: ModuleType, scripted_server: Any) -> None:
    server = scripted_server(b"220 mx\r\n", b"250 OK\r\n")
    with closing(smtpc.SMTP(server.host, server.port)) as client:
        with pytest.raises(ValueError):
            client.docmd("NOOP", "a\0b")
        assert client.noop() == (250, b"OK")
    assert commands(server) == [b"NOOP"]


def test_smtpc_starttls_verifies_by_default(
    smtpc: ModuleType, smtp_server: Any
) -> None:
    server = smtp_server(starttls=True)
    client = smtpc.SMTP(server.host, server.port)
    with closing(client), pytest.raises(OSError) as info:
        client.starttls()
    error = info.value
    assert isinstance(error, ssl.SSLCertVerificationError) or isinstance(
        error.__cause__, ssl.SSLCertVerificationError
    )


def test_smtpc_starttls_checks_the_name_given(
    smtpc: ModuleType, smtp_server: Any, client_tls_context: ssl.SSLContext
) -> None:
    # The certificate names localhost and 127.0.0.1, not mx.example.net.
    server = smtp_server(starttls=True)
    client = smtpc.SMTP(server.host, server.port)
    with closing(client), pytest.raises(OSError):
        client.starttls(context=client_tls_context, server_hostname="mx.example.net")
    with smtpc.SMTP(server.host, server.port) as client:
        reply = client.starttls(context=client_tls_context, server_hostname="localhost")
        assert reply[0] == 220
        assert client.sendmail(SENDER, RECIPIENT, MESSAGE) == {}
    assert server.envelopes[-1].original_content == MESSAGE


def test_smtpc_timeout_is_also_timeout_error(
    smtpc: ModuleType, scripted_server: Any
) -> None:
    server = scripted_server(b"")
    with pytest.raises(TimeoutError) as info:
        smtpc.SMTP(server.host, server.port, timeout=0.2)
    assert isinstance(info.value, smtpc.SMTPServerDisconnected)


def test_smtpc_exception_extras(smtpc: ModuleType) -> None:
    assert issubclass(smtpc.SMTPServerDisconnected, ConnectionError)
    assert issubclass(smtpc.SMTPTimeoutError, TimeoutError)
    assert issubclass(smtpc.SMTPTimeoutError, smtpc.SMTPException)


def test_smtpc_debug_output_hides_credentials(
    smtpc: ModuleType, smtp_server: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server(auth=True, auth_exclude_mechanism=["CRAM-MD5"])
    secret = base64.b64encode(f"\0{AUTH_USER}\0{AUTH_PASSWORD}".encode()).decode()
    with smtpc.SMTP(server.host, server.port) as client:
        client.set_debuglevel(1)
        client.login(AUTH_USER, AUTH_PASSWORD)
    err = capfd.readouterr().err
    assert "235" in err
    assert secret not in err
    assert AUTH_PASSWORD not in err


# --- message content sources smtpc adds --------------------------------------


def store_twice(
    smtpc: ModuleType, server: SMTPServer, content: Any
) -> tuple[bytes, bytes]:
    """Send ``content``, then MESSAGE_WITH_EDGES as bytes; return both as stored."""
    with smtpc.SMTP(server.host, server.port) as client:
        assert client.sendmail(SENDER, RECIPIENT, content) == {}
        stored = server.envelopes[-1].original_content
        client.sendmail(SENDER, RECIPIENT, MESSAGE_WITH_EDGES)
    return stored, server.envelopes[-1].original_content


MESSAGE_WITH_EDGES = b"Subject: edges\r\n\r\n.start\nbare lf\rbare cr\r\n..\r\n.\r\nend"


def test_smtpc_sendmail_binary_file(
    smtpc: ModuleType, smtpd: SMTPServer, tmp_path: Any
) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(MESSAGE_WITH_EDGES)
    with path.open("rb") as file:
        stored, expected = store_twice(smtpc, smtpd, file)
    assert stored == expected == crlf(MESSAGE_WITH_EDGES)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_smtpc_sendmail_chunks(smtpc: ModuleType, smtpd: SMTPServer, size: int) -> None:
    data = MESSAGE_WITH_EDGES
    chunks = (data[i : i + size] for i in range(0, len(data), size))
    stored, expected = store_twice(smtpc, smtpd, chunks)
    assert stored == expected == crlf(data)


def test_smtpc_sendmail_file_like_without_name(
    smtpc: ModuleType, smtpd: SMTPServer
) -> None:
    stored, expected = store_twice(smtpc, smtpd, io.BytesIO(MESSAGE_WITH_EDGES))
    assert stored == expected


PIECES = [b"a", b"b ", b".", b"..", b"\r", b"\n", b"\r\n", b"\xc3\xa9", b"From "]
bodies = st.lists(st.sampled_from(PIECES), min_size=1, max_size=60).map(b"".join)


@pytest.fixture
def session(smtpc: ModuleType, smtpd: SMTPServer) -> Iterator[Any]:
    """One smtpc session shared by the examples of a property test."""
    with smtpc.SMTP(smtpd.host, smtpd.port) as client:
        yield client


# The server and the session are reused on purpose across examples.
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_smtpc_line_endings_normalised(
    session: Any, smtpd: SMTPServer, body: bytes
) -> None:
    message = b"Subject: property\r\n\r\n" + body
    assert session.sendmail(SENDER, RECIPIENT, message) == {}
    assert smtpd.envelopes[-1].original_content == crlf(message)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies, data=st.data())
def test_smtpc_chunk_split_does_not_matter(
    session: Any, smtpd: SMTPServer, body: bytes, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    bounds = [0, *cuts, len(body)]
    chunks = [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert session.sendmail(SENDER, RECIPIENT, iter(chunks)) == {}
    assert smtpd.envelopes[-1].original_content == crlf(body)
