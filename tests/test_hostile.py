"""Hostile servers and hostile input: nothing smuggled, nothing leaked,
nothing hangs. A scripted loopback server plays the hostile part."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import AUTH_PASSWORD, AUTH_USER

import smtpc
import smtpc.tls
from smtpc import core

GREETING = b"220 mx.example.net ESMTP\r\n"
EHLO = b"250-mx.example.net\r\n250 8BITMIME\r\n"
OK = b"250 ok\r\n"
SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.org"

Server = Callable[..., Any]


def verbs(server: Any) -> list[bytes]:
    return [line.split(b" ", 1)[0].rstrip(b"\r\n").upper() for line in server.lines]


# -- no injection ----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\r", "\n", "\0"])
@pytest.mark.parametrize(
    "call",
    [
        lambda c, bad: c.ehlo("client" + bad + "MAIL FROM:<x@evil>"),
        lambda c, bad: c.helo("client" + bad),
        lambda c, bad: c.verify("a" + bad + "@example.org"),
        lambda c, bad: c.docmd("NOOP", "x" + bad + "RSET"),
        lambda c, bad: c.sendmail(SENDER, [RECIPIENT], b"x", ["SIZE=1" + bad]),
        lambda c, bad: c.sendmail(SENDER, [RECIPIENT], b"x", (), ["NOTIFY" + bad]),
        lambda c, bad: c.sendmail(SENDER + bad, [RECIPIENT], b"x"),
        lambda c, bad: c.sendmail(SENDER, [RECIPIENT + bad], b"x"),
        lambda c, bad: c.mail("a" + bad + "@example.com"),
        lambda c, bad: c.rcpt("a" + bad + "@example.com"),
    ],
    ids=[
        "ehlo",
        "helo",
        "vrfy",
        "docmd",
        "mail-param",
        "rcpt-param",
        "sender",
        "recipient",
        "mail",
        "rcpt",
    ],
)
def test_control_characters_in_any_argument_raise_before_sending(
    scripted_server: Server, call: Callable[[Any, str], object], bad: str
) -> None:
    server = scripted_server(GREETING, EHLO, OK, OK, b"221 bye\r\n")
    client = smtpc.SMTP(server.host, server.port, local_hostname="client.example")
    client.ehlo()
    with pytest.raises(ValueError):
        call(client, bad)
    assert client.noop() == (250, b"ok")
    client.close()
    # Only the EHLO and the NOOP reached the server: nothing of the bad call.
    assert verbs(server) == [b"EHLO", b"NOOP"]


@pytest.mark.parametrize(
    "address",
    ["x" * 65 + "@example.org", "a@" + "d" * 256, "a@" + "d." * 130 + "org"],
    ids=["local-part", "domain", "path"],
)
def test_over_long_addresses_raise_before_sending(
    scripted_server: Server, address: str
) -> None:
    server = scripted_server(GREETING, EHLO, b"221 bye\r\n")
    with smtpc.SMTP(server.host, server.port) as client:
        client.ehlo()
        with pytest.raises(ValueError, match="longer than"):
            client.sendmail(SENDER, [address], b"x")
    assert verbs(server) == [b"EHLO", b"QUIT"]


def test_over_long_command_raises_before_sending(scripted_server: Server) -> None:
    server = scripted_server(GREETING, EHLO, b"221 bye\r\n")
    with smtpc.SMTP(server.host, server.port) as client:
        client.ehlo()
        with pytest.raises(ValueError, match="longer than 512 octets"):
            client.docmd("HELP", "x" * 600)
    assert verbs(server) == [b"EHLO", b"QUIT"]


# -- no smuggling ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"a", b"\x00", b" "]),
        max_size=40,
    ),
    st.integers(1, 8),
)
def test_data_section_has_one_end_of_data_however_the_input_looks(
    pieces: list[bytes], split: int
) -> None:
    data = b"".join(pieces)
    out = bytearray()
    emitter = core.Emitter(lambda chunks: out.extend(b"".join(chunks)), 64)
    emitter.begin_data()
    for i in range(0, len(data), split):
        emitter.write_data(data[i : i + split])
    emitter.end_data()
    emitter.flush()
    section = b"\r\n" + bytes(out)
    # The only end-of-data sequence is the last five octets, and no line
    # ending other than CRLF remains for a server to read differently.
    assert section.find(b"\r\n.\r\n") == len(section) - 5
    bare = section.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare


def test_smuggling_sequences_arrive_as_text(smtpd: Any) -> None:
    hostile = (
        b"Subject: x\r\n\r\nbefore\n.\nMAIL FROM:<evil@example.net>\r\n"
        b"\r.\r\nRCPT TO:<victim@example.net>\r\n.\r\nafter"
    )
    with smtpc.SMTP(smtpd.host, smtpd.port) as client:
        assert client.sendmail(SENDER, [RECIPIENT], hostile) == {}
    assert len(smtpd.envelopes) == 1
    stored = smtpd.envelopes[0].original_content
    assert stored == (
        b"Subject: x\r\n\r\nbefore\r\n.\r\nMAIL FROM:<evil@example.net>\r\n"
        b"\r\n.\r\nRCPT TO:<victim@example.net>\r\n.\r\nafter\r\n"
    )


# -- bounded and well-formed replies ------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"250 " + b"x" * 9000 + b"\r\n", 500),
        (b"250-x\r\n" * 1000 + b"250 x\r\n", -1),
        (b"2x0 what\r\n", -1),
        (b"250-one\r\n251 two\r\n", -1),
        (b"250*bad separator\r\n", -1),
    ],
    ids=["long-line", "many-lines", "no-code", "code-changes", "separator"],
)
def test_malformed_replies_raise_and_close(
    scripted_server: Server, reply: bytes, code: int
) -> None:
    server = scripted_server(GREETING, reply)
    client = smtpc.SMTP(server.host, server.port)
    with pytest.raises(smtpc.RemoteProtocolError) as info:
        client.ehlo()
    assert info.value.smtp_code == code
    assert client.sock is None
    with pytest.raises(smtpc.SMTPServerDisconnected):
        client.noop()


def test_server_closing_mid_reply() -> None:
    server = _Trickler(GREETING + b"250-mx.example.net\r\n250-PIPE", 0, linger=0)
    try:
        client = smtpc.SMTP("127.0.0.1", server.port, timeout=5)
        with pytest.raises(smtpc.SMTPServerDisconnected):
            client.ehlo()
    finally:
        server.close()
    assert client.sock is None


def test_server_closing_mid_transaction_reports_what_was_accepted(
    scripted_server: Server,
) -> None:
    server = scripted_server(GREETING, EHLO, OK, OK, b"550 no\r\n", None)
    client = smtpc.SMTP(server.host, server.port)
    with pytest.raises(smtpc.SMTPServerDisconnected) as info:
        client.sendmail(SENDER, ["a@example.org", "b@example.org"], b"hi\r\n")
    result = info.value.result  # type: ignore[attr-defined]
    assert [r.reply.code for r in result.recipients] == [250, 550]
    assert result.final is None
    assert not result.delivered
    assert client.sock is None
    # As sendmail's docstring says, the result is kept.
    assert client.last_result is result


# -- 421 closes the session wherever it comes -----------------------------------


CLOSING = b"421 4.3.2 mx.example.net closing\r\n"


def test_421_greeting(scripted_server: Server) -> None:
    server = scripted_server(CLOSING)
    with pytest.raises(smtpc.SMTPConnectError) as info:
        smtpc.SMTP(server.host, server.port)
    assert info.value.smtp_code == 421
    assert verbs(server) == []


def test_421_to_ehlo_sends_no_helo(scripted_server: Server) -> None:
    server = scripted_server(GREETING, CLOSING, OK)
    client = smtpc.SMTP(server.host, server.port)
    with pytest.raises(smtpc.SMTPException) as info:
        client.ehlo_or_helo_if_needed()
    assert getattr(info.value, "smtp_code", 421) == 421
    assert client.sock is None
    assert verbs(server) == [b"EHLO"]


@pytest.mark.parametrize(
    ("replies", "error", "sent"),
    [
        ([CLOSING], smtpc.SMTPSenderRefused, [b"MAIL"]),
        ([OK, CLOSING], smtpc.SMTPRecipientsRefused, [b"MAIL", b"RCPT"]),
        ([OK, OK, CLOSING], smtpc.SMTPDataError, [b"MAIL", b"RCPT", b"DATA"]),
        (
            [OK, OK, b"354 go\r\n", CLOSING],
            smtpc.SMTPDataError,
            [b"MAIL", b"RCPT", b"DATA", b"HI", b"."],
        ),
    ],
    ids=["mail", "rcpt", "data", "after-content"],
)
def test_421_in_a_transaction_closes_and_sends_nothing_more(
    scripted_server: Server,
    replies: list[bytes],
    error: type[Exception],
    sent: list[bytes],
) -> None:
    server = scripted_server(GREETING, EHLO, *replies, OK, OK)
    client = smtpc.SMTP(server.host, server.port)
    with pytest.raises(error):
        client.sendmail(SENDER, [RECIPIENT], b"hi\r\n")
    assert client.sock is None
    with pytest.raises(smtpc.SMTPServerDisconnected):
        client.noop()
    assert verbs(server) == [b"EHLO", *sent]


# -- timeouts ----------------------------------------------------------------------


class _Trickler:
    """Sends ``script`` one octet every ``interval`` seconds, then waits
    ``linger`` seconds before closing."""

    def __init__(self, script: bytes, interval: float, linger: float = 10) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script = script
        self.interval = interval
        self.linger = linger
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            for i in range(len(self.script)):
                if self.done.wait(self.interval):
                    return
                try:
                    conn.sendall(self.script[i : i + 1])
                except OSError:
                    return
            self.done.wait(self.linger)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.listener.close()


@pytest.mark.parametrize("script", [b"", GREETING * 20], ids=["silent", "trickling"])
def test_a_silent_or_trickling_server_cannot_hold_the_client(script: bytes) -> None:
    server = _Trickler(script, 0.05)
    started = time.monotonic()
    try:
        with pytest.raises(smtpc.SMTPTimeoutError):
            smtpc.SMTP("127.0.0.1", server.port, timeout=0.5)
    finally:
        server.close()
    assert time.monotonic() - started < 3


def test_timeout_error_is_also_timeouterror() -> None:
    assert issubclass(smtpc.SMTPTimeoutError, TimeoutError)
    assert issubclass(smtpc.SMTPTimeoutError, smtpc.SMTPServerDisconnected)


def test_default_timeout_is_bounded(smtpd: Any) -> None:
    with smtpc.SMTP(smtpd.host, smtpd.port) as client:
        assert client.sock is not None
        assert client.sock.gettimeout() == smtpc.client.DEFAULT_TIMEOUT


def test_setdefaulttimeout_is_honoured_and_none_means_forever(smtpd: Any) -> None:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(7.0)
    try:
        with smtpc.SMTP(smtpd.host, smtpd.port) as client:
            assert client.sock is not None
            assert client.sock.gettimeout() == 7.0
    finally:
        socket.setdefaulttimeout(previous)
    with smtpc.SMTP(smtpd.host, smtpd.port, timeout=None) as client:
        assert client.sock is not None
        assert client.sock.gettimeout() is None


# -- credentials ---------------------------------------------------------------------


def test_no_second_mechanism_after_credentials_are_refused(
    scripted_server: Server,
) -> None:
    server = scripted_server(
        GREETING,
        b"250-mx.example.net\r\n250 AUTH CRAM-MD5 PLAIN LOGIN\r\n",
        b"334 PDEyMzQ1QGV4YW1wbGUubmV0Pg==\r\n",
        b"535 5.7.8 credentials invalid\r\n",
        b"221 bye\r\n",
    )
    with (
        smtpc.SMTP(server.host, server.port) as client,
        pytest.raises(smtpc.SMTPAuthenticationError) as info,
    ):
        client.login("user", "secret")
    assert info.value.smtp_code == 535
    assert verbs(server)[:3] == [b"EHLO", b"AUTH", verbs(server)[2]]
    assert verbs(server).count(b"AUTH") == 1
    assert b"secret" not in bytes(server.received)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("/run/lmtp.sock", True),
        ("192.0.2.1", False),
        ("mail.example.net", False),
        ("::ffff:192.0.2.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert smtpc.tls.is_loopback(host) is loopback


def test_clear_text_auth_to_another_host_warns(
    smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server = smtp_server(auth=True)
    with smtpc.SMTP(server.host, server.port) as client:
        client.login(AUTH_USER, AUTH_PASSWORD)
        assert "clear-text" not in caplog.text
        # The warning goes by the name the session was opened with.
        client._host = "mail.example.net"
        client.ehlo()
        with caplog.at_level("WARNING", logger="smtpc.session"):
            client.login(AUTH_USER, AUTH_PASSWORD)
    assert "over a clear-text session to mail.example.net" in caplog.text
    assert AUTH_PASSWORD not in caplog.text


def test_cli_refuses_clear_text_auth_to_another_host_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from smtpc import cli

    def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("the CLI tried to connect")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    monkeypatch.setenv("SMTP_PASSWORD", "secret")
    status = cli.main(
        [
            "send",
            "--server",
            "mail.example.net:25",
            "--user",
            "me",
            "--from",
            "a@example.com",
            "--to",
            "b@example.org",
            "-",
        ]
    )
    assert status == 2
    assert "refusing to send a password without TLS" in capsys.readouterr().err


class _SlowReader:
    """Accepts a message but reads its content a little at a time."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            conn.sendall(GREETING)
            conn.recv(1024)
            conn.sendall(EHLO)
            for reply in (OK, OK, b"354 go\r\n"):
                conn.recv(1024)
                conn.sendall(reply)
            while not self.done.wait(0.05):
                try:
                    if not conn.recv(1024):
                        return
                except OSError:
                    return

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.listener.close()


def test_transaction_timeout_bounds_a_server_that_reads_slowly() -> None:
    server = _SlowReader()
    chunk = b"x" * 1000 + b"\r\n"
    content = (chunk for _ in range(100_000))  # 100 MB, never held whole
    started = time.monotonic()
    try:
        client = smtpc.SMTP(
            "127.0.0.1", server.port, timeout=30, transaction_timeout=1.0
        )
        with pytest.raises(smtpc.SMTPTimeoutError):
            client.sendmail(SENDER, [RECIPIENT], content)
    finally:
        server.close()
    assert time.monotonic() - started < 5
    assert client.sock is None


def test_async_transaction_timeout_bounds_a_server_that_reads_slowly() -> None:
    server = _SlowReader()
    chunk = b"x" * 1000 + b"\r\n"
    content = (chunk for _ in range(100_000))  # 100 MB, never held whole

    async def main() -> bool:
        client = smtpc.AsyncSMTP(
            "127.0.0.1", server.port, timeout=30, transaction_timeout=1.0
        )
        await client.connect()
        with pytest.raises(smtpc.SMTPTimeoutError):
            await client.sendmail(SENDER, [RECIPIENT], content)
        connected = client.is_connected
        await client.wait_closed()
        return connected

    started = time.monotonic()
    try:
        connected = asyncio.run(main())
    finally:
        server.close()
    assert time.monotonic() - started < 5
    assert not connected


def test_async_transaction_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        smtpc.AsyncSMTP(transaction_timeout=0)


def test_a_source_failing_mid_content_closes_the_session(smtpd: Any) -> None:
    def content() -> Any:
        yield b"Subject: x\r\n\r\nfirst\r\n"
        raise RuntimeError("the source broke")

    started = time.monotonic()
    with smtpc.SMTP(smtpd.host, smtpd.port, timeout=30) as client:
        with pytest.raises(RuntimeError, match="the source broke"):
            client.sendmail(SENDER, [RECIPIENT], content())
        # Nothing more may go out as content: the session is closed.
        assert client.sock is None
        with pytest.raises(smtpc.SMTPServerDisconnected):
            client.noop()
    assert time.monotonic() - started < 5
    assert smtpd.envelopes == []


class _TextReader:
    """A file-like object whose read() gives str, as a text file would."""

    def read(self, size: int = -1) -> str:
        return "Subject: x\r\n\r\nhi\r\n"


@pytest.mark.parametrize(
    "msg",
    [
        _TextReader(),
        [b"Subject: x\r\n\r\n", "text chunk"],
        "closed",
    ],
    ids=["read-gives-str", "list-with-str", "closed-file"],
)
def test_unreadable_sources_fail_before_the_transaction(
    scripted_server: Server, msg: Any, tmp_path: Any
) -> None:
    if msg == "closed":
        path = tmp_path / "m.eml"
        path.write_bytes(b"Subject: x\r\n\r\nhi\r\n")
        with open(path, "rb") as file:
            pass
        msg = file
    server = scripted_server(GREETING, EHLO, b"221 bye\r\n")
    with smtpc.SMTP(server.host, server.port) as client:
        client.ehlo()
        with pytest.raises((TypeError, ValueError)):
            client.sendmail(SENDER, [RECIPIENT], msg)
    assert verbs(server) == [b"EHLO", b"QUIT"]


def test_data_answered_without_354_raises_that_reply(scripted_server: Server) -> None:
    server = scripted_server(GREETING, EHLO, OK, OK, b"250 ok\r\n", OK, b"221 bye\r\n")
    with (
        smtpc.SMTP(server.host, server.port) as client,
        pytest.raises(smtpc.SMTPDataError) as info,
    ):
        client.sendmail(SENDER, [RECIPIENT], b"hi\r\n")
    assert info.value.args == (250, b"ok")
    assert b"hi" not in bytes(server.received)


def test_a_nonsense_reply_to_auth_sends_no_second_mechanism(
    scripted_server: Server,
) -> None:
    server = scripted_server(
        GREETING,
        b"250-mx.example.net\r\n250 AUTH PLAIN LOGIN\r\n",
        b"250 what\r\n",
        b"221 bye\r\n",
    )
    with (
        smtpc.SMTP(server.host, server.port) as client,
        pytest.raises(smtpc.SMTPAuthenticationError),
    ):
        client.login("user", "secret")
    assert verbs(server).count(b"AUTH") == 1
