"""Blocking driver: ``SMTP``, ``SMTP_SSL`` and ``LMTP``, as in smtplib.

The classes keep smtplib's constructor arguments, methods, return values,
exceptions and attributes, so that ``import smtpc as smtplib`` works. They
move bytes between a socket and the sans-I/O :class:`~smtpc.engine.Session`;
every protocol decision is the engine's.

Beyond smtplib: :meth:`SMTP.sendmail` also takes binary files and iterables
of byte chunks and streams them; it uses PIPELINING and CHUNKING when the
server offers them; :meth:`SMTP.deliver` returns a
:class:`~smtpc.engine.TransactionResult` with every recipient's reply.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import core, operations
from .engine.commands import DSN, addr_only, encode_path, quoteaddr
from .engine.replies import Reply, ReplyCode
from .engine.session import READ, START_TLS, Session, State, Steps
from .engine.transaction import TransactionResult
from .errors import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPNotSupportedError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from .sources import open_source

if TYPE_CHECKING:
    import ssl

    from .auth import Mechanism

SMTP_PORT = 25
SMTP_SSL_PORT = 465
LMTP_PORT = 2003
CRLF = "\r\n"
bCRLF = b"\r\n"
_MAXCHALLENGE = 5

# Used when neither the caller nor socket.setdefaulttimeout() gives a timeout,
# so that a silent server cannot hold a session forever: RFC 5321 §4.5.3.2
# asks clients to wait at least five minutes for most replies.
DEFAULT_TIMEOUT = 300.0

_GLOBAL_DEFAULT_TIMEOUT: Any = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_RECV_SIZE = 4096

session_log = logging.getLogger("smtpc.session")


def _max_line() -> int:
    # Programs patch smtplib._MAXLINE to accept longer reply lines; honour the
    # same patch on this package.
    return int(getattr(sys.modules[__package__], "_MAXLINE", 8192))


class SMTP(operations.ClientState):
    """An SMTP client session, compatible with ``smtplib.SMTP``.

    Args:
        host, port: connect at once when ``host`` is given; ``"host:port"``
            is accepted as in smtplib.
        local_hostname: the name sent with EHLO/HELO (default: this host's
            fully qualified name).
        timeout: seconds for connecting and for each reply or write. When
            omitted, ``socket.getdefaulttimeout()`` applies, or
            :data:`DEFAULT_TIMEOUT` if that is None; ``None`` waits forever.
        source_address: ``(host, port)`` to bind the socket to.
        buffer_size: the fixed output buffer of the session, in bytes.
        pipelining: use PIPELINING when the server offers it.
        chunking: use BDAT when the server offers CHUNKING.
        transaction_timeout: seconds for a whole mail transaction sent by
            :meth:`deliver` or :meth:`sendmail`, from MAIL to the final
            reply, however the server paces its reading and replies; for
            :meth:`deliver_many`, for the whole batch (None: only
            ``timeout`` applies, to each step).

    Raises:
        SMTPConnectError: the greeting was not 220.
    """

    debuglevel = 0
    sock: socket.socket | None = None
    file = None
    ehlo_msg = "ehlo"
    default_port = SMTP_PORT
    _lmtp = False
    _implicit_tls = False

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        *,
        buffer_size: int = core.DEFAULT_BUFFER_SIZE,
        pipelining: bool = True,
        chunking: bool = True,
        transaction_timeout: float | None = None,
    ) -> None:
        self._host = host
        self.timeout = timeout
        self.transaction_timeout = transaction_timeout
        self._deadline: float | None = None
        self.source_address = source_address
        self.command_encoding = "ascii"
        self.buffer_size = buffer_size
        self.pipelining = pipelining
        self.chunking = chunking
        self.last_result: TransactionResult | None = None
        self._session = self._new_session()
        self._session.state = State.CLOSED
        self._auth_challenge_count = 0
        self.user: str | None = None
        self.password: str | None = None
        if local_hostname is not None:
            self.local_hostname = local_hostname
        else:
            self.local_hostname = operations.local_name()
        if host:
            code, msg = self.connect(host, port)
            if code != ReplyCode.SERVICE_READY:
                self.close()
                raise SMTPConnectError(code, msg)

    def __enter__(self) -> SMTP:
        return self

    def __exit__(self, *args: object) -> None:
        try:
            code, message = self.docmd("QUIT")
            if code != ReplyCode.CLOSING:
                raise SMTPResponseException(code, message)
        except SMTPServerDisconnected:
            pass
        finally:
            self.close()

    # -- driver ---------------------------------------------------------------

    def _new_session(self) -> Session:
        emitter = core.Emitter(self._sink, self.buffer_size)
        session = Session(emitter, lmtp=self._lmtp, max_line=_max_line())
        session.on_command = self._trace_command
        session.tls = self._implicit_tls
        return session

    def _run(self, steps: Steps) -> Any:
        """Run the engine's steps against the socket until they return."""
        try:
            step = next(steps)
            while True:
                if step is READ:
                    try:
                        reply = self._read_reply()
                    except SMTPServerDisconnected as exc:
                        step = steps.throw(exc)
                        continue
                    step = steps.send(reply)
                elif step is START_TLS:
                    self._start_tls()
                    step = steps.send(None)
                else:
                    # DRAIN: a blocking send has drained before returning.
                    step = steps.send(None)
        except StopIteration as stop:
            return stop.value
        finally:
            steps.close()
            if self._session.state is State.CLOSED and self.sock is not None:
                self._close_socket()

    def _read_reply(self) -> Reply:
        session = self._session
        session.emitter.flush()
        # The timeout bounds the whole reply, so that a server trickling one
        # octet at a time cannot hold the session longer than a silent one.
        deadline = None
        shortened = False
        while (reply := self._next_reply()) is None:
            sock = self.sock
            if sock is None:
                raise SMTPServerDisconnected("please run connect() first")
            try:
                timeout = sock.gettimeout()
                if deadline is None:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    if self._deadline is not None:
                        deadline = min(deadline or self._deadline, self._deadline)
                        sock.settimeout(self._remaining(deadline))
                        shortened = True
                elif deadline is not None:
                    sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                    shortened = True
                data = sock.recv(_RECV_SIZE)
            except TimeoutError as exc:
                self._close_socket()
                raise SMTPTimeoutError("timed out waiting for a reply") from exc
            except OSError as exc:
                self._close_socket()
                raise SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {exc}"
                ) from exc
            try:
                session.receive_data(data)
            except SMTPServerDisconnected:
                self._close_socket()
                raise
        if shortened and self.sock is not None:
            self.sock.settimeout(self._effective_timeout())
        self._trace_reply(reply)
        return reply

    def _next_reply(self) -> Reply | None:
        try:
            return self._session.next_reply()
        except SMTPResponseException:
            # A malformed or over-long reply: nothing after it can be paired.
            self._session.state = State.CLOSED
            self._close_socket()
            raise

    def _sink(self, pieces: list[Any]) -> None:
        """The emitter's sink: one scatter-gather send where the socket can."""
        sock = self.sock
        if sock is None:
            raise SMTPServerDisconnected("please run connect() first")
        try:
            if self._deadline is not None:
                timeout = self._effective_timeout()
                remaining = self._remaining(self._deadline)
                sock.settimeout(
                    remaining if timeout is None else min(timeout, remaining)
                )
            if hasattr(sock, "sendmsg") and not hasattr(sock, "cipher"):
                _sendmsg_all(sock, pieces)
            else:
                # One TLS record per call: join the pieces first.
                sock.sendall(b"".join(pieces))
        except TimeoutError as exc:
            self._close_socket()
            raise SMTPTimeoutError("timed out sending to the server") from exc
        except OSError as exc:
            self._close_socket()
            raise SMTPServerDisconnected(f"Server not connected: {exc}") from exc

    @staticmethod
    def _remaining(deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the mail transaction took too long")
        return remaining

    def _bounded(self, steps: Steps) -> Any:
        """Run a mail transaction's steps within ``transaction_timeout``."""
        if self.transaction_timeout is None:
            return self._run(steps)
        self._deadline = time.monotonic() + self.transaction_timeout
        try:
            return self._run(steps)
        finally:
            self._deadline = None
            if self.sock is not None:
                self.sock.settimeout(self._effective_timeout())

    def _start_tls(self) -> None:
        context = self._tls_context
        assert self.sock is not None
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=self._host)
        except OSError:
            self._close_socket()
            raise
        self.file = None
        if session_log.isEnabledFor(logging.DEBUG):
            session_log.debug("TLS: %s %s", self.sock.version(), self.sock.cipher())

    def _close_socket(self) -> None:
        self._session.state = State.CLOSED
        sock, self.sock = self.sock, None
        self.file = None
        if sock is not None:
            sock.close()

    # -- connection -----------------------------------------------------------

    def _effective_timeout(self) -> float | None:
        if self.timeout is _GLOBAL_DEFAULT_TIMEOUT:
            default = socket.getdefaulttimeout()
            return DEFAULT_TIMEOUT if default is None else default
        return self.timeout

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        timeout = self._effective_timeout()
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        if self.debuglevel > 0:
            self._print_debug("connect: to", (host, port), self.source_address)
        sock = socket.create_connection((host, port), timeout, self.source_address)
        # The end of the message content follows it in a short write of its
        # own; with Nagle's algorithm that write waits for the server's
        # delayed ACK, about 40 ms a message. asyncio sets this option too.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect(
        self,
        host: str = "localhost",
        port: int = 0,
        source_address: tuple[str, int] | None = None,
    ) -> tuple[int, bytes]:
        """Connect and read the greeting; returns its ``(code, text)``.

        ``"host:port"`` is split when no port is given.

        Raises:
            OSError: the connection failed, or the port is not a number.
            SMTPServerDisconnected: the server closed before its greeting.
        """
        if source_address:
            self.source_address = source_address
        if not port and host.find(":") == host.rfind(":"):
            i = host.rfind(":")
            if i >= 0:
                host, text = host[:i], host[i + 1 :]
                try:
                    port = int(text)
                except ValueError:
                    raise OSError("nonnumeric port") from None
        if not port:
            port = self.default_port
        sys.audit("smtpc.connect", self, host, port)
        self._host = host
        if self.sock is not None:
            self._close_socket()
        self.sock = self._get_socket(host, port, self.timeout)
        self.file = None
        self._session = self._new_session()
        reply: Reply = self._run(self._session.greeting())
        if session_log.isEnabledFor(logging.DEBUG):
            session_log.debug("connected to %s:%s: %s", host, port, reply.code)
        if self.debuglevel > 0:
            self._print_debug("connect:", repr(reply.message))
        return reply.as_tuple()

    def close(self) -> None:
        """Close the connection to the server."""
        self._close_socket()

    # -- commands, as smtplib names them ---------------------------------------

    def send(self, s: str | bytes) -> None:
        """Send raw bytes (``str`` is encoded with ``command_encoding``)."""
        if self.sock is None or self._session.state is State.CLOSED:
            raise SMTPServerDisconnected("please run connect() first")
        data = s.encode(self.command_encoding) if isinstance(s, str) else s
        if self.debuglevel > 0:
            self._print_debug("send:", repr(data))
        self._session.emitter.write(data)
        self._session.emitter.flush()

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Queue and send one command line.

        Raises:
            ValueError: CR, LF or NUL in the command or its arguments.
        """
        line = cmd if args == "" else f"{cmd} {args}"
        self._command(line.encode(self.command_encoding))
        self._session.emitter.flush()

    def _command(self, line: bytes, limit: int = core.MAX_COMMAND_LINE) -> None:
        session = self._session
        if self.sock is None or session.state is State.CLOSED:
            raise SMTPServerDisconnected("please run connect() first")
        session.send(line, limit=limit)

    def getreply(self) -> tuple[int, bytes]:
        """Read one reply: ``(code, text)``; the text lines joined by ``\\n``.

        Raises:
            SMTPServerDisconnected: the server closed the connection.
            RemoteProtocolError: the reply is malformed or too long.
        """
        if self.sock is None:
            raise SMTPServerDisconnected("please run connect() first")
        try:
            reply = self._read_reply()
        finally:
            if self._session.state is State.CLOSED and self.sock is not None:
                self._close_socket()
        return reply.as_tuple()

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Send a command and return its reply's ``(code, text)``."""
        verb = cmd.split(" ", 1)[0].upper()
        self.putcmd(cmd, args)
        code, msg = self.getreply()
        assert self._session.last_reply is not None
        self._session.after(verb, self._session.last_reply)
        return code, msg

    def helo(self, name: str = "") -> tuple[int, bytes]:
        """HELO; the reply is kept in ``helo_resp``."""
        reply: Reply = self._run(self._session.helo(name or self.local_hostname))
        return reply.as_tuple()

    def ehlo(self, name: str = "") -> tuple[int, bytes]:
        """EHLO; on 250 the extension keywords fill ``esmtp_features``."""
        verb = self.ehlo_msg.upper()
        steps = self._session.ehlo(name or self.local_hostname, verb)
        reply: Reply = self._run(steps)
        return reply.as_tuple()

    def help(self, args: str = "") -> bytes:
        """HELP; returns the reply text."""
        return self.docmd("help", args)[1]

    def rset(self) -> tuple[int, bytes]:
        """RSET: end the current mail transaction."""
        self.command_encoding = "ascii"
        return self.docmd("rset")

    def _rset(self) -> None:
        with contextlib.suppress(SMTPServerDisconnected):
            self.rset()

    def noop(self) -> tuple[int, bytes]:
        """NOOP."""
        return self.docmd("noop")

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """MAIL FROM, with ESMTP parameters when the server speaks ESMTP.

        Raises:
            SMTPNotSupportedError: SMTPUTF8 asked for, and not offered.
            ValueError: CR, LF or NUL, or an address over RFC 5321's limits.
        """
        optionlist = ""
        if options and self.does_esmtp:
            if any(x.lower() == "smtputf8" for x in options):
                if not self.has_extn("smtputf8"):
                    raise SMTPNotSupportedError("SMTPUTF8 not supported by server")
                self.command_encoding = "utf-8"
            optionlist = " " + " ".join(options)
        path = encode_path(sender, self.command_encoding == "utf-8")
        line = b"MAIL FROM:" + path + optionlist.encode(self.command_encoding)
        self._command(line, limit=core.MAX_COMMAND_LINE + len(optionlist))
        return self._reply_after("MAIL")

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """RCPT TO, with ESMTP parameters when the server speaks ESMTP."""
        optionlist = ""
        if options and self.does_esmtp:
            optionlist = " " + " ".join(options)
        path = encode_path(recip, self.command_encoding == "utf-8")
        line = b"RCPT TO:" + path + optionlist.encode(self.command_encoding)
        self._command(line, limit=core.MAX_COMMAND_LINE + len(optionlist))
        return self._reply_after("RCPT")

    def _reply_after(self, verb: str) -> tuple[int, bytes]:
        result = self.getreply()
        assert self._session.last_reply is not None
        self._session.after(verb, self._session.last_reply)
        return result

    def data(self, msg: Any) -> tuple[int, bytes]:
        """DATA, then the message content, dot-stuffed as it streams.

        ``msg`` may be bytes, an ASCII str, a binary file or an iterable of
        byte chunks.

        Raises:
            SMTPDataError: DATA was refused.
        """
        source = open_source(msg)
        self._command(b"DATA")
        code, repl = self.getreply()
        if self.debuglevel > 0:
            self._print_debug("data:", (code, repl))
        if code != ReplyCode.START_MAIL_INPUT:
            raise SMTPDataError(code, repl)
        emitter = self._session.emitter
        emitter.begin_data()
        for chunk in source.chunks:
            emitter.write_data(chunk)
        emitter.end_data()
        result = self._reply_after("END")
        if self.debuglevel > 0:
            self._print_debug("data:", result)
        return result

    def verify(self, address: str) -> tuple[int, bytes]:
        """VRFY: ask the server to verify an address."""
        self.putcmd("vrfy", addr_only(address))
        return self.getreply()

    vrfy = verify

    def expn(self, address: str) -> tuple[int, bytes]:
        """EXPN: ask the server to expand a mailing list."""
        self.putcmd("expn", addr_only(address))
        return self.getreply()

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO, or HELO if EHLO is refused, unless one was already accepted.

        Raises:
            SMTPHeloError: neither was accepted.
        """
        name = self.local_hostname
        self._run(operations.hello(self._session, name, self.ehlo_msg.upper()))

    # -- AUTH ------------------------------------------------------------------

    def auth(
        self,
        mechanism: str,
        authobject: Callable[..., str | bytes | None] | Mechanism,
        *,
        initial_response_ok: bool = True,
    ) -> tuple[int, bytes]:
        """AUTH with any mechanism: ``authobject(challenge=None)`` gives the
        initial response, ``authobject(challenge)`` each answer, as in
        smtplib. Strings are sent as UTF-8. ``authobject`` may also be a
        mechanism object from :mod:`smtpc.auth`, such as
        ``auth.ScramSHA256(user, password)``.

        Raises:
            SMTPServerProofError: the server could not prove that it knows
                the password (SCRAM).
            SMTPAuthenticationError: the server refused the credentials.
            RemoteProtocolError: the server sent too many challenges.
        """
        mechanism = mechanism.upper()
        steps = self._auth_steps(
            mechanism, authobject, initial_response_ok, _MAXCHALLENGE
        )
        try:
            result: tuple[int, bytes] = self._run(steps)
        except SMTPAuthenticationError as exc:
            session_log.warning("AUTH %s refused: %d", mechanism, exc.smtp_code)
            raise
        session_log.info("AUTH %s: %d", mechanism, result[0])
        return result

    def login(
        self,
        user: str,
        password: str | Callable[[], str],
        *,
        initial_response_ok: bool = True,
        mechanism: str | Mechanism | None = None,
    ) -> tuple[int, bytes]:
        """AUTH with the strongest mechanism both sides know, or ``mechanism``.

        Without ``mechanism`` the order is SCRAM-SHA-256, SCRAM-SHA-1,
        CRAM-MD5, PLAIN, LOGIN. ``mechanism`` names one (``"NTLM"``,
        ``"XOAUTH2"``, ...) or is a mechanism object from :mod:`smtpc.auth`;
        for XOAUTH2 and OAUTHBEARER ``password`` is the access token, or a
        callable returning a fresh one at each attempt. After a 535
        (credentials refused) or a cancelled exchange no weaker mechanism is
        tried, so the password is not offered again in a weaker form; after
        other refusals the next mechanism is tried, as in smtplib.

        Raises:
            SMTPHeloError: EHLO/HELO failed.
            SMTPNotSupportedError: the server offers no AUTH.
            SMTPServerProofError: the server could not prove that it knows
                the password (SCRAM).
            SMTPAuthenticationError: the credentials were refused.
            SMTPException: no mechanism in common, or the server does not
                offer ``mechanism``.
            ValueError: an unknown mechanism name.
        """
        self.ehlo_or_helo_if_needed()
        steps = self._login_steps(
            user, password, initial_response_ok, _MAXCHALLENGE, mechanism
        )
        result: tuple[int, bytes] = self._run(steps)
        return result

    # -- TLS -------------------------------------------------------------------

    def starttls(
        self,
        keyfile: str | None = None,
        certfile: str | None = None,
        context: ssl.SSLContext | None = None,
        *,
        server_hostname: str | None = None,
    ) -> tuple[int, bytes]:
        """STARTTLS (RFC 3207), then forget what EHLO said, as the RFC asks.

        The server's certificate and host name are verified unless
        ``context`` says otherwise. The name checked (and sent for SNI) is
        the host given to :meth:`connect`, or ``server_hostname``: a mail
        exchanger reached by its address is checked against its MX name.

        Raises:
            SMTPNotSupportedError: the server does not offer STARTTLS.
            SMTPResponseException: STARTTLS was refused.
            ssl.SSLError: the handshake or the verification failed.
        """
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        self._tls_context = operations.tls_context(context, keyfile, certfile)
        if server_hostname is not None:
            self._host = server_hostname
        reply: Reply = self._run(self._session.starttls())
        if reply.code != ReplyCode.SERVICE_READY:
            raise SMTPResponseException(reply.code, reply.message, reply)
        return reply.as_tuple()

    # -- mail transactions --------------------------------------------------------

    def deliver(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: Any,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        *,
        dsn: DSN | None = None,
        requiretls: bool = False,
    ) -> TransactionResult:
        """Run one mail transaction and return every reply it got.

        Unlike :meth:`sendmail`, a refusal is not an exception: the result
        tells, recipient by recipient. The session is left ready for the next
        transaction, or closed after a 421.

        Args:
            dsn: delivery status notifications to ask for (RFC 3461), when
                the server offers DSN.
            requiretls: refuse to send unless the session is TLS and the
                server offers REQUIRETLS (RFC 8689), and ask it to keep TLS.

        Raises:
            SMTPNotSupportedError: the message or an address needs an
                extension (SMTPUTF8, 8BITMIME) the server does not offer.
            SMTPSenderRefused: the message is larger than the server's SIZE.
            SMTPServerDisconnected: the session was lost; its ``result``
                attribute tells what had been accepted.
            ValueError, TypeError: bad addresses or message, before any byte
                of the transaction is sent.
        """
        self.ehlo_or_helo_if_needed()
        steps = operations.transaction(
            self._session,
            from_addr,
            to_addrs,
            msg,
            mail_options,
            rcpt_options,
            dsn,
            requiretls,
            pipelining=self.pipelining,
            chunking=self.chunking,
        )
        self.last_result = None
        try:
            result: TransactionResult = self._bounded(steps)
        except SMTPServerDisconnected as exc:
            # What was accepted before the session was lost.
            self.last_result = getattr(exc, "result", None)
            raise
        self.last_result = result
        operations.log_transaction(self._host, result)
        return result

    def deliver_many(
        self, messages: Iterable[tuple[str, str | Sequence[str], Any]]
    ) -> list[TransactionResult]:
        """Send ``(from_addr, to_addrs, msg)`` messages back to back.

        With PIPELINING each message's end of content goes in one write with
        the next message's MAIL, RCPT and DATA (RFC 2920 §3.1), so a message
        costs about one round trip instead of two.

        Returns:
            One :class:`~smtpc.engine.TransactionResult` per message, in order.

        Raises:
            what :meth:`deliver` raises, for the message that has it; the
            results before it are in :attr:`last_results`.
        """
        self.ehlo_or_helo_if_needed()
        results: list[TransactionResult] = []
        self.last_results = results
        steps = operations.many(
            self._session,
            messages,
            results.append,
            pipelining=self.pipelining,
            chunking=self.chunking,
        )
        self._bounded(steps)
        for result in results:
            operations.log_transaction(self._host, result)
        if results:
            self.last_result = results[-1]
        return results

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: Any,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        *,
        dsn: DSN | None = None,
        requiretls: bool = False,
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message, as smtplib does; returns the refused recipients.

        ``msg`` may be bytes, an ASCII str, a binary file, an iterable of byte
        chunks or an ``email.message.Message``; files and iterables stream.
        The full result is kept in :attr:`last_result`.

        Raises:
            SMTPHeloError: EHLO/HELO failed.
            SMTPRecipientsRefused: every recipient was refused.
            SMTPSenderRefused: MAIL FROM was refused.
            SMTPDataError: the message content was refused.
            SMTPNotSupportedError: an extension the message needs is missing.
        """
        result = self.deliver(
            from_addr,
            to_addrs,
            msg,
            mail_options,
            rcpt_options,
            dsn=dsn,
            requiretls=requiretls,
        )
        return operations.smtplib_outcome(result, from_addr)

    def send_message(
        self,
        msg: Any,
        from_addr: str | None = None,
        to_addrs: str | Sequence[str] | None = None,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Send an ``email.message.Message``, taking the envelope from its
        headers as smtplib does (``Resent-*`` first, Bcc never sent).

        Raises:
            ValueError: more than one block of ``Resent-`` headers.
            and what :meth:`sendmail` raises.
        """
        self.ehlo_or_helo_if_needed()
        from_addr, to_addrs, data, mail_options = operations.message_envelope(
            msg,
            from_addr,
            to_addrs,
            mail_options,
            self.has_extn("smtputf8"),
            self.has_extn("8bitmime"),
        )
        return self.sendmail(from_addr, to_addrs, data, mail_options, rcpt_options)

    def quit(self) -> tuple[int, bytes]:
        """QUIT, then close."""
        reply: Reply = self._run(self._session.quit())
        self.close()
        return reply.as_tuple()


def _sendmsg_all(sock: socket.socket, pieces: list[Any]) -> None:
    sent = sock.sendmsg(pieces)
    # A view counts octets by nbytes; making a view of every piece here
    # would cost more than the send on small messages.
    total = sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in pieces)
    if sent == total:
        return
    # A partial send: finish piece by piece from where the kernel stopped.
    for piece in pieces:
        view = memoryview(piece).cast("B")
        if sent >= view.nbytes:
            sent -= view.nbytes
            continue
        sock.sendall(view[sent:])
        sent = 0


class SMTP_SSL(SMTP):
    """SMTP over implicit TLS (RFC 8314), compatible with ``smtplib.SMTP_SSL``.

    The certificate and host name are verified unless ``context`` says
    otherwise.
    """

    default_port = SMTP_SSL_PORT
    _implicit_tls = True

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        local_hostname: str | None = None,
        keyfile: str | None = None,
        certfile: str | None = None,
        timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
        source_address: tuple[str, int] | None = None,
        context: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        self.keyfile = keyfile
        self.certfile = certfile
        self.context = operations.tls_context(context, keyfile, certfile)
        super().__init__(host, port, local_hostname, timeout, source_address, **options)

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        plain = super()._get_socket(host, port, timeout)
        try:
            return self.context.wrap_socket(plain, server_hostname=self._host)
        except BaseException:
            plain.close()
            raise


class LMTP(SMTP):
    """LMTP (RFC 2033), compatible with ``smtplib.LMTP``; also over a Unix
    socket when ``host`` is a path. After the message content each accepted
    recipient gets its own reply, kept in :attr:`SMTP.last_result`."""

    ehlo_msg = "lhlo"
    _lmtp = True

    def __init__(
        self,
        host: str = "",
        port: int = LMTP_PORT,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
        **options: Any,
    ) -> None:
        super().__init__(
            host,
            port,
            local_hostname=local_hostname,
            source_address=source_address,
            timeout=timeout,
            **options,
        )

    def connect(
        self,
        host: str = "localhost",
        port: int = 0,
        source_address: tuple[str, int] | None = None,
    ) -> tuple[int, bytes]:
        """Connect over TCP, or to a Unix socket when ``host`` starts with /."""
        if host[0] != "/":
            return super().connect(host, port, source_address=source_address)
        timeout = self._effective_timeout()
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(host)
        except OSError:
            sock.close()
            raise
        self._host = host
        self.sock = sock
        self.file = None
        self._session = self._new_session()
        reply: Reply = self._run(self._session.greeting())
        return reply.as_tuple()


__all__ = [
    "CRLF",
    "LMTP",
    "LMTP_PORT",
    "SMTP",
    "SMTP_PORT",
    "SMTP_SSL",
    "SMTP_SSL_PORT",
    "bCRLF",
    "quoteaddr",
]
