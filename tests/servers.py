"""Real SMTP servers on loopback for the tests: aiosmtpd, a scripted server, smtp-sink.

Every server listens on 127.0.0.1 on a free port and stops when its fixture is torn
down. Nothing here talks to another host.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import os
import secrets
import selectors
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

__all__ = [
    "AUTH_PASSWORD",
    "AUTH_USER",
    "HOST",
    "SERVER_NAME",
    "SMTP_SINK",
    "RecordedEnvelope",
    "RecordingHandler",
    "ScriptedServer",
    "SinkMessage",
    "SinkServer",
    "SMTPServer",
    "TLSRecordingHandler",
    "client_tls_context",
    "scripted_server",
    "server_tls_context",
    "smtp_server",
    "smtp_sink",
    "smtpd",
    "start_smtp_sink",
    "tls_ca",
]

HOST = "127.0.0.1"
SERVER_NAME = "mx.example.net"
AUTH_USER = "mailer@example.com"
AUTH_PASSWORD = "correct horse battery staple"
SMTP_SINK = Path("/usr/sbin/smtp-sink")

# Substring of an address -> the reply refusing it.
REFUSED_SENDERS = {"refuse": "552 5.3.4 Sender refused"}
REFUSED_RECIPIENTS = {
    "refuse": "550 5.1.1 Recipient address rejected",
    "defer": "451 4.3.0 Try again later",
}


# --- TLS ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority for this test run."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server context with a certificate for localhost and 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("localhost", HOST).configure_cert(context)
    return context


@pytest.fixture
def client_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Verifying client context that trusts the test CA."""
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


# --- aiosmtpd ----------------------------------------------------------------


@dataclass(frozen=True)
class RecordedEnvelope:
    """One mail transaction as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[str]
    # The message content after the server removed the dot-stuffing.
    original_content: bytes


@dataclass
class RecordingHandler:
    """aiosmtpd handler that keeps every envelope and refuses chosen addresses.

    Addresses containing a key of ``refuse_senders`` / ``refuse_recipients`` get the
    matching reply. ``data_reply``, if set, is the reply to the end of DATA. AUTH is
    advertised only if ``auth`` is true.
    """

    auth: bool = False
    refuse_senders: dict[str, str] = field(
        default_factory=lambda: dict(REFUSED_SENDERS)
    )
    refuse_recipients: dict[str, str] = field(
        default_factory=lambda: dict(REFUSED_RECIPIENTS)
    )
    data_reply: str | None = None
    envelopes: list[RecordedEnvelope] = field(default_factory=list)
    # (mechanism, user name) of every successful AUTH.
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Any,
        envelope: Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # aiosmtpd leaves this to the hook once a handler has one.
        session.host_name = hostname
        if self.auth:
            return responses
        return [line for line in responses if not line[4:].startswith("AUTH")]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Any,
        envelope: Any,
        address: str,
        options: list[str],
    ) -> str:
        refusal = _refusal(self.refuse_senders, address)
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Any,
        envelope: Any,
        address: str,
        options: list[str],
    ) -> str:
        refusal = _refusal(self.refuse_recipients, address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_VRFY(
        self, server: SMTP, session: Any, envelope: Any, address: str
    ) -> Any:
        return _refusal(self.refuse_recipients, address) or MISSING

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(
            RecordedEnvelope(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                list(envelope.mail_options),
                list(envelope.rcpt_options),
                envelope.original_content,
            )
        )
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd authenticator for PLAIN and LOGIN: one user, one password."""
        assert isinstance(data, LoginPassword)
        user = data.login.decode()
        if user != AUTH_USER or data.password.decode() != AUTH_PASSWORD:
            return AuthResult(success=False, handled=False)
        self.logins.append((mechanism, user))
        return AuthResult(success=True, auth_data=user)

    # aiosmtpd names the mechanism after the method: "CRAM__MD5" is "CRAM-MD5".
    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 2195: the client answers "user hex(HMAC-MD5(password, challenge))"."""
        challenge = f"<{secrets.token_hex(8)}@{SERVER_NAME}>".encode()
        answer = await server.challenge_auth(challenge)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        user, _, digest = answer.decode().rpartition(" ")
        expected = hmac.new(AUTH_PASSWORD.encode(), challenge, "md5").hexdigest()
        if user != AUTH_USER or not hmac.compare_digest(digest, expected):
            return AuthResult(success=False, handled=False)
        self.logins.append(("CRAM-MD5", user))
        return AuthResult(success=True, auth_data=user)


@dataclass
class TLSRecordingHandler(RecordingHandler):
    """RecordingHandler that also records how each session was secured.

    ``ehlo_tls`` gets one entry per EHLO and ``envelope_tls`` one per recorded
    envelope: the session's TLS protocol version ("TLSv1.3"), or None in clear
    text. ``handshakes`` counts completed STARTTLS handshakes. A client that
    sends EHLO again after STARTTLS, as RFC 3207 asks, leaves ``[None,
    "TLSv1.3"]`` in ``ehlo_tls`` for that session.
    """

    ehlo_tls: list[str | None] = field(default_factory=list)
    envelope_tls: list[str | None] = field(default_factory=list)
    handshakes: int = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Any,
        envelope: Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.ehlo_tls.append(_tls_version(session))
        return await super().handle_EHLO(server, session, envelope, hostname, responses)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        recorded = len(self.envelopes)
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.envelopes) > recorded:
            self.envelope_tls.append(_tls_version(session))
        return reply

    def handle_STARTTLS(self, server: SMTP, session: Any, envelope: Any) -> bool:
        # aiosmtpd calls this hook once the handshake is done; True accepts it.
        self.handshakes += 1
        return True


def _tls_version(session: Any) -> str | None:
    """The TLS protocol version of an aiosmtpd session, None in clear text."""
    if not session.ssl:
        return None
    version: str | None = session.ssl["ssl_object"].version()
    return version


def _refusal(rules: dict[str, str], address: str) -> str | None:
    return next((reply for key, reply in rules.items() if key in address), None)


class _Controller(Controller):
    """Controller that listens on port 0 and learns the port the system chose."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SMTPServer:
    """A running aiosmtpd server."""

    host: str
    port: int
    handler: RecordingHandler
    controller: Controller

    @property
    def envelopes(self) -> list[RecordedEnvelope]:
        return self.handler.envelopes


@pytest.fixture
def smtp_server(
    server_tls_context: ssl.SSLContext,
) -> Iterator[Callable[..., SMTPServer]]:
    """Factory: start an aiosmtpd server on loopback, stopped at teardown.

    Args: ``auth`` offers PLAIN, LOGIN and CRAM-MD5 for AUTH_USER / AUTH_PASSWORD
    (in clear text, this is loopback); ``starttls`` offers STARTTLS; ``implicit_tls``
    wraps the session in TLS from the start (SMTP_SSL); ``handler`` replaces the
    default RecordingHandler (say, one with a ``data_reply``); other keywords go to
    ``aiosmtpd.smtp.SMTP``.
    """
    started: list[Controller] = []

    def start(
        *,
        auth: bool = False,
        starttls: bool = False,
        implicit_tls: bool = False,
        handler: RecordingHandler | None = None,
        **smtp_kwargs: Any,
    ) -> SMTPServer:
        handler = handler or RecordingHandler()
        if auth:
            handler.auth = True
            smtp_kwargs.update(
                auth_require_tls=False, authenticator=handler.authenticate
            )
        if starttls:
            smtp_kwargs["tls_context"] = server_tls_context
        controller = _Controller(
            handler,
            hostname=HOST,
            port=0,
            server_hostname=SERVER_NAME,
            ssl_context=server_tls_context if implicit_tls else None,
            ready_timeout=10,
            **smtp_kwargs,
        )
        controller.start()
        started.append(controller)
        return SMTPServer(HOST, controller.port, handler, controller)

    yield start
    for controller in started:
        thread = controller._thread
        controller.stop()
        assert thread is None or not thread.is_alive()


@pytest.fixture
def smtpd(smtp_server: Callable[..., SMTPServer]) -> SMTPServer:
    """A plain aiosmtpd server with the default refusal rules."""
    return smtp_server()


# --- scripted server ---------------------------------------------------------


class ScriptedServer:
    """One-session server that sends scripted replies and records every byte received.

    It sends ``greeting``, then one reply for each command line; after a reply
    starting with 354 it reads message content up to CRLF.CRLF and answers that
    with the next reply. A reply of ``None``, a 221 or 421 reply, or running out of
    replies closes the session. Replies are sent exactly as given.
    """

    def __init__(self, greeting: bytes | None, replies: list[bytes | None]) -> None:
        self.greeting = greeting
        self.replies = list(replies)
        self.received = bytearray()
        self._stop = threading.Event()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self.host, self.port = self._listener.getsockname()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def lines(self) -> list[bytes]:
        """What the client sent, split after each CRLF."""
        return io.BytesIO(self.received).readlines()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        assert not self._thread.is_alive()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.1)
                self._session(conn)
            return

    def _session(self, conn: socket.socket) -> None:
        pending = bytearray()
        in_data = False
        if self.greeting is None or not self._send(conn, self.greeting):
            return
        while not self._stop.is_set():
            end = _end_of_data(pending) if in_data else _end_of_line(pending)
            if end < 0:
                chunk = self._recv(conn)
                if chunk is None:
                    continue
                if not chunk:
                    return
                self.received += chunk
                pending += chunk
                continue
            del pending[:end]
            if not self.replies:
                return
            reply = self.replies.pop(0)
            if reply is None or not self._send(conn, reply):
                return
            in_data = reply.startswith(b"354")

    @staticmethod
    def _recv(conn: socket.socket) -> bytes | None:
        try:
            return conn.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return b""

    @staticmethod
    def _send(conn: socket.socket, reply: bytes) -> bool:
        """Send a reply; False if the session ends here."""
        try:
            conn.sendall(reply)
        except OSError:
            return False
        return not reply.startswith((b"221", b"421"))


def _end_of_line(pending: bytearray) -> int:
    """Index just past the first LF, or -1."""
    end = pending.find(b"\n")
    return end + 1 if end >= 0 else -1


def _end_of_data(pending: bytearray) -> int:
    """Index just past the CRLF.CRLF ending message content, or -1."""
    # The content may be empty, so the line "." can also start the buffer.
    end = (b"\r\n" + pending).find(b"\r\n.\r\n")
    return end + 3 if end >= 0 else -1


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    """Factory: ``scripted_server(greeting, *replies)``, stopped at teardown."""
    started: list[ScriptedServer] = []

    def start(greeting: bytes | None, *replies: bytes | None) -> ScriptedServer:
        server = ScriptedServer(greeting, list(replies))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- Postfix smtp-sink -------------------------------------------------------


@dataclass(frozen=True)
class SinkMessage:
    """One mail transaction dumped by smtp-sink."""

    mail_args: str
    rcpt_args: list[str]
    # Message content with CRLF line endings, as the client meant it.
    content: bytes


@dataclass
class SinkServer:
    """A running smtp-sink process that dumps each mail transaction to a file."""

    host: str
    port: int
    dump_dir: Path
    process: subprocess.Popen[bytes]

    def messages(self, count: int, timeout: float = 5.0) -> list[SinkMessage]:
        """Wait until ``count`` messages are dumped and parse them."""
        deadline = time.monotonic() + timeout
        while len(files := sorted(self.dump_dir.iterdir())) < count:
            assert time.monotonic() < deadline, f"smtp-sink dumped {len(files)} files"
            time.sleep(0.02)
        files.sort(key=lambda path: path.stat().st_mtime_ns)
        return [_parse_sink_dump(path.read_bytes()) for path in files]


def _parse_sink_dump(dump: bytes) -> SinkMessage:
    # smtp-sink writes its own header lines, a three-line Received header, the
    # message with LF line endings and one empty line.
    lines = dump.split(b"\n")
    received = next(i for i, line in enumerate(lines) if line.startswith(b"Received:"))
    ours = [line.decode().partition(": ") for line in lines[:received]]
    mail_args = next(value for name, _, value in ours if name == "X-Mail-Args")
    rcpt_args = [value for name, _, value in ours if name == "X-Rcpt-Args"]
    body = lines[received + 3 : -2]
    return SinkMessage(mail_args, rcpt_args, b"".join(line + b"\r\n" for line in body))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + 5
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


@pytest.fixture
def start_smtp_sink() -> Iterator[Callable[..., SinkServer]]:
    """Factory: ``start_smtp_sink(*options)`` runs smtp-sink with extra options.

    Pass ``"-L"`` for LMTP. Skips the test if Postfix is not installed.
    """
    if not SMTP_SINK.exists():
        pytest.skip(f"{SMTP_SINK} is missing: install Debian's postfix package")
    started: list[subprocess.Popen[bytes]] = []
    # Not under tmp_path: as root, smtp-sink runs as "nobody", who must write here.
    dumps = tempfile.TemporaryDirectory(prefix="smtp-sink-")
    Path(dumps.name).chmod(0o777)

    def start(*options: str) -> SinkServer:
        dump_dir = Path(dumps.name, f"sink{len(started)}")
        dump_dir.mkdir()
        dump_dir.chmod(0o777)
        # smtp-sink refuses to keep root privileges.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        for _ in range(5):
            port = _free_port()
            command = [str(SMTP_SINK), *user, "-h", SERVER_NAME, "-d", f"{dump_dir}/m."]
            process = subprocess.Popen(
                [*command, *options, f"{HOST}:{port}", "64"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(process)
            if _wait_listening(process, port):
                return SinkServer(HOST, port, dump_dir, process)
        pytest.fail("smtp-sink did not start listening")

    yield start
    for process in started:
        process.terminate()
        process.wait(5)
    dumps.cleanup()


@pytest.fixture
def smtp_sink(start_smtp_sink: Callable[..., SinkServer]) -> SinkServer:
    """smtp-sink speaking SMTP with its default extensions."""
    return start_smtp_sink()


class TurnCounter:
    """A relay on loopback that counts round trips (the client sends, then
    the server answers), sessions, and sessions that ended with a reset
    (they leave the round trips before them as they were). Each accepted
    connection is relayed to ``upstream``.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.turns = 0
        self.sessions = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.sessions += 1
            thread = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_spoke = False
        with client, server, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while True:
                for key, _ in selector.select():
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                        if data:
                            key.data.sendall(data)
                    except ConnectionResetError:
                        with self._lock:
                            self.resets += 1
                        return
                    except OSError:
                        return
                    if not data:
                        return
                    if source is client:
                        client_spoke = True
                    elif client_spoke:
                        client_spoke = False
                        with self._lock:
                            self.turns += 1
