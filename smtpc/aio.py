"""asyncio driver: the blocking client's operations, results and exceptions,
as coroutines.

:class:`SMTP` moves bytes between an asyncio transport and the same sans-I/O
:class:`~smtpc.engine.Session` that :mod:`smtpc.client` drives, running the
same engine steps (see :mod:`smtpc.engine.session`): READ flushes the
emitter into the transport, waits until the transport has taken it, and
reads one reply; DRAIN waits until the transport has taken what was
written; START_TLS runs asyncio's ``start_tls``. Every protocol decision is
the engine's.

Each reply wait, each drain, the connection and the TLS handshake are
bounded by ``timeout``: past it :class:`~smtpc.SMTPTimeoutError` is raised
and the session is closed. Message files are read in the event loop, one
chunk at a time.

The blocking client (:class:`smtpc.SMTP`) is one session per thread; this
one is one session per task: two tasks must not run commands on the same
client at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import core, operations
from .client import (
    _GLOBAL_DEFAULT_TIMEOUT,
    DEFAULT_TIMEOUT,
    LMTP_PORT,
    SMTP_PORT,
    SMTP_SSL_PORT,
)
from .engine.commands import DSN, addr_only
from .engine.replies import Reply, ReplyCode
from .engine.session import DRAIN, READ, Session, State, Steps
from .engine.transaction import TransactionResult
from .errors import (
    RemoteProtocolError,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPNotSupportedError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

if TYPE_CHECKING:
    import ssl
    from types import TracebackType

    from .auth import Mechanism

__all__ = ["LMTP", "SMTP"]

_MAXCHALLENGE = 5
_CLOSE_WAIT = 1.0  # seconds a closing transport gets to finish (TLS close_notify)
# Reading pauses while this much is received and not yet read: a session
# needs one reply at a time, so a server cannot make the client buffer more.
_RECEIVE_LIMIT = 64 * 1024
_RECV_SIZE = 4096  # octets read at once
# Output held before it goes to the transport, while no reply is awaited.
_HOLD = 64 * 1024
_TIMER_SLACK = 1e-3  # seconds: a timer may fire this early

session_log = logging.getLogger("smtpc.session")
_wire_log = logging.getLogger("smtpc.wire")


class _Connection(asyncio.BufferedProtocol):
    """The transport's receive buffer and write flow control, awaitable.

    The transport reads into one small buffer of ours: a plain protocol would
    have it allocate (and the system map, then unmap) 256 KiB for each read.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buffer = memoryview(bytearray(_RECV_SIZE))
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._lost = False
        self._error: BaseException | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None
        # One timer bounds the waits for replies: a wait moves the deadline
        # on and leaves the timer be, and the timer, when it fires, re-arms
        # itself for the deadline of the wait under way, if any. A timer
        # per wait would cost a push on the loop's heap and a cancellation
        # for each reply.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _RECEIVE_LIMIT and not self._reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = True
        self._error = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # -- what the driver awaits ---------------------------------------------------

    @property
    def buffered(self) -> int:
        """Octets received and not yet read."""
        return self._size

    @property
    def writing_paused(self) -> bool:
        """The transport's write buffer is above its high mark."""
        return self._writing_paused

    async def closed(self, timeout: float) -> None:
        """Wait until the transport has closed, aborting it after ``timeout``:
        a TLS transport closes only once its close_notify exchange is done."""
        try:
            async with asyncio.timeout(timeout):
                while not self._lost:
                    await self._wait()
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
                # abort() closes the socket from the next loop iteration.
                while not self._lost:
                    await asyncio.sleep(0)

    def time(self) -> float:
        """The event loop's clock."""
        return self._loop.time()

    async def receive(self, deadline: float | None = None) -> bytes:
        """What the server sent since the last call; ``b""`` at end of file.

        Args:
            deadline: the loop time (:meth:`time`) to wait until, at most.

        Raises:
            OSError: the connection was lost with an error.
            TimeoutError: nothing came before ``deadline``.
        """
        while not self._chunks:
            if self._eof:
                if self._error is not None:
                    raise self._error
                return b""
            await self._wait(deadline)
        return self.take()

    def take(self) -> bytes:
        """What the server sent since the last call, without waiting:
        ``b""`` when nothing came."""
        chunks, self._chunks, self._size = self._chunks, [], 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high mark.

        Raises:
            ConnectionError: the connection is lost.
        """
        while True:
            if self._eof or self.transport is None or self.transport.is_closing():
                if isinstance(self._error, OSError):
                    raise self._error
                raise ConnectionResetError("Connection lost")
            if not self._writing_paused:
                return
            await self._wait()

    async def _wait(self, deadline: float | None = None) -> None:
        waiter = self._waiter = self._loop.create_future()
        if deadline is not None:
            self._deadline = deadline
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = self._loop.call_at(deadline, self._check_deadline)
        try:
            await waiter
        finally:
            self._waiter = None
            self._deadline = None

    def _check_deadline(self) -> None:
        self._timer = None
        waiter, deadline = self._waiter, self._deadline
        if waiter is None or deadline is None or waiter.done():
            return
        if deadline - self._loop.time() <= _TIMER_SLACK:
            waiter.set_exception(TimeoutError())
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _keepable(piece: Any) -> bool:
    # The transport may keep what it cannot send at once, after the sink has
    # returned; views of memory that changes later (the emitter's buffer, a
    # caller's bytearray) are copied first.
    if type(piece) is bytes:
        return True
    return type(piece) is memoryview and type(piece.obj) is bytes


class SMTP(operations.ClientState):
    """An SMTP client session on asyncio, with the blocking client's API.

    Methods that talk to the server are coroutines; they return what the
    blocking :class:`smtpc.SMTP` returns and raise what it raises. Nothing
    is sent before :meth:`connect` (or ``async with``, which connects when
    ``host`` is given and sends QUIT at the end).

    Args:
        host, port: the server; ``"host:port"`` is accepted as in smtplib.
        local_hostname: the name sent with EHLO/HELO (default: this host's
            fully qualified name).
        timeout: seconds for connecting, for the TLS handshake, for each
            reply and for each drain of the write buffer. When omitted,
            ``socket.getdefaulttimeout()`` applies, or
            :data:`smtpc.client.DEFAULT_TIMEOUT` if that is None; ``None``
            waits forever.
        source_address: ``(host, port)`` to bind the socket to.
        buffer_size: the fixed output buffer of the session, in bytes.
        pipelining: use PIPELINING when the server offers it.
        chunking: use BDAT when the server offers CHUNKING.
        use_tls: implicit TLS from the start (RFC 8314), as ``SMTP_SSL``.
        tls_context: the context for implicit TLS; by default one that
            verifies the server's certificate and host name.
        transaction_timeout: seconds for a whole mail transaction sent by
            :meth:`deliver` or :meth:`sendmail`, from MAIL to the final
            reply, however the server paces its reading and replies; for
            :meth:`deliver_many`, for the whole batch (None: only
            ``timeout`` applies, to each step). Past it
            :class:`~smtpc.SMTPTimeoutError` is raised and the session
            closed.
    """

    ehlo_msg = "ehlo"
    default_port = SMTP_PORT
    _lmtp = False

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
        use_tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        transaction_timeout: float | None = None,
    ) -> None:
        if transaction_timeout is not None and transaction_timeout <= 0:
            raise ValueError("transaction_timeout must be positive")
        self.transaction_timeout = transaction_timeout
        # The loop time a running mail transaction must end by, or None.
        self._deadline: float | None = None
        self._host = host
        self._port = port
        self.timeout = timeout
        self.source_address = source_address
        self.command_encoding = "ascii"
        self.buffer_size = buffer_size
        self.pipelining = pipelining
        self.chunking = chunking
        self.use_tls = use_tls
        self.tls_context = tls_context
        self.last_result: TransactionResult | None = None
        self.last_results: list[TransactionResult] = []
        self.local_hostname = local_hostname or operations.local_name()
        self._transport: asyncio.Transport | None = None
        self._conn: _Connection | None = None
        self._held: list[Any] = []
        self._held_size = 0
        self._closing: _Connection | None = None
        self._starttls_context: ssl.SSLContext | None = None
        self._session = self._new_session()
        self._session.state = State.CLOSED

    async def __aenter__(self) -> SMTP:
        """Connect when ``host`` was given and the client is not connected.

        Raises:
            SMTPConnectError: the greeting was not 220.
        """
        if self._host and not self.is_connected:
            code, message = await self.connect(self._host, self._port)
            if code != ReplyCode.SERVICE_READY:
                self.close()
                raise SMTPConnectError(code, message)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """QUIT and close, as the blocking client's ``with`` block does."""
        try:
            code, message = await self.docmd("QUIT")
            if code != ReplyCode.CLOSING:
                raise SMTPResponseException(code, message)
        except SMTPServerDisconnected:
            pass
        finally:
            await self.wait_closed()

    @property
    def is_connected(self) -> bool:
        """A transport is open and the session not closed."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        return self._session.state is not State.CLOSED

    @property
    def tls_version(self) -> str | None:
        """The session's TLS protocol version ("TLSv1.3"), None in clear text."""
        transport = self._transport
        tls = transport.get_extra_info("ssl_object") if transport is not None else None
        version = tls.version() if tls is not None else None
        return str(version) if version else None

    # -- driver ---------------------------------------------------------------

    def _new_session(self) -> Session:
        emitter = core.Emitter(self._sink, self.buffer_size)
        session = Session(emitter, lmtp=self._lmtp, max_line=operations.max_line())
        session.on_command = self._trace_command
        return session

    def _effective_timeout(self) -> float | None:
        if self.timeout is _GLOBAL_DEFAULT_TIMEOUT:
            import socket

            default = socket.getdefaulttimeout()
            return DEFAULT_TIMEOUT if default is None else default
        return self.timeout

    async def _run(self, steps: Steps) -> Any:
        """Run the engine's steps against the transport until they return."""
        session = self._session
        # Decided once a run: each check costs more than a reply's parsing.
        tracing = self.debuglevel > 0 or _wire_log.isEnabledFor(logging.DEBUG)
        session.on_command = self._trace_command if tracing else None
        try:
            step = next(steps)
            while True:
                value: Reply | None = None
                try:
                    if step is READ:
                        # 1. Send what the steps queued, in one write.
                        session.emitter.flush()
                        self._write_held()
                        conn = self._conn
                        if conn is None:
                            raise SMTPServerDisconnected("please run connect() first")
                        if conn.writing_paused:
                            await self._drain()
                        # 2. Pipelined replies often arrive together: one
                        #    already received needs no wait, and no timer.
                        value = self._next_reply()
                        if value is None and conn.buffered:
                            session.receive_data(conn.take())
                            value = self._next_reply()
                        if value is None:
                            value = await self._wait_reply(conn)
                        if tracing:
                            self._trace_reply(value)
                    elif step is DRAIN:
                        await self._drain()
                    else:
                        await self._start_tls()
                except SMTPServerDisconnected as exc:
                    step = steps.throw(exc)
                    continue
                step = steps.send(value)
        except StopIteration as stop:
            return stop.value
        except asyncio.CancelledError:
            # Stopped mid-exchange: later replies could not be paired with
            # their commands any more.
            self._close_transport()
            raise
        finally:
            steps.close()
            if self._session.state is State.CLOSED and self._transport is not None:
                self._close_transport()

    @contextlib.contextmanager
    def _transport_errors(
        self, doing: str, *, handshake: bool = False
    ) -> Iterator[None]:
        """The one place where transport errors become smtpc errors.

        A timeout is an :class:`SMTPTimeoutError`, any other ``OSError`` an
        :class:`SMTPServerDisconnected`; the transport is closed. With
        ``handshake``, other errors while connecting or during the TLS
        handshake pass unchanged, as the blocking client and smtplib raise
        them.
        """
        try:
            yield
        except SMTPException:
            raise
        except OSError as exc:
            error = self._transport_error(exc, doing)
            if handshake and not isinstance(exc, TimeoutError):
                raise
            raise error from exc

    def _transport_error(self, exc: OSError, doing: str) -> SMTPException:
        """Close the transport; the smtpc error that ``exc`` stands for."""
        self._close_transport()
        if isinstance(exc, TimeoutError):
            return SMTPTimeoutError(f"timed out {doing}")
        return SMTPServerDisconnected(f"Connection unexpectedly closed: {exc}")

    def _require_transport(self) -> tuple[asyncio.Transport, _Connection]:
        if self._transport is None or self._conn is None:
            raise SMTPServerDisconnected("please run connect() first")
        return self._transport, self._conn

    def _sink(self, pieces: list[Any]) -> None:
        """The emitter's sink: output is held until a reply or a drain is
        awaited, or ``_HOLD`` octets are held, then goes to the transport in
        one write; so a message's content, its end and the next message's
        commands leave in one packet. The transport never blocks."""
        transport, _ = self._require_transport()
        if transport.is_closing():
            self._close_transport()
            raise SMTPServerDisconnected("Server not connected")
        held = self._held
        for piece in pieces:
            if not _keepable(piece):
                piece = bytes(piece)
            held.append(piece)
            self._held_size += piece.nbytes if type(piece) is memoryview else len(piece)
        if self._held_size >= _HOLD:
            self._write_held()

    def _write_held(self) -> None:
        held = self._held
        if held and self._transport is not None:
            self._held, self._held_size = [], 0
            if len(held) == 1:
                self._transport.write(held[0])
            else:
                self._transport.writelines(held)

    async def _drain(self) -> None:
        self._write_held()
        _, conn = self._require_transport()
        with self._transport_errors("sending to the server"):
            async with asyncio.timeout_at(self._step_deadline(conn)):
                await conn.drain()

    def _step_deadline(self, conn: _Connection) -> float | None:
        """The loop time one step must end by: ``timeout`` from now, and no
        later than the mail transaction's deadline."""
        timeout = self._effective_timeout()
        deadline = None if timeout is None else conn.time() + timeout
        if self._deadline is None:
            return deadline
        return self._deadline if deadline is None else min(deadline, self._deadline)

    async def _bounded(self, steps: Steps) -> Any:
        """Run a mail transaction's steps within ``transaction_timeout``."""
        if self.transaction_timeout is None:
            return await self._run(steps)
        self._deadline = asyncio.get_running_loop().time() + self.transaction_timeout
        try:
            return await self._run(steps)
        finally:
            self._deadline = None

    async def _wait_reply(self, conn: _Connection) -> Reply:
        """Read until a whole reply is in, within ``timeout`` for the whole
        reply, so that a server trickling one octet at a time cannot hold
        the session longer than a silent one."""
        session = self._session
        deadline = self._step_deadline(conn)
        try:
            while (reply := self._next_reply()) is None:
                data = await conn.receive(deadline)
                try:
                    session.receive_data(data)
                except SMTPServerDisconnected:
                    self._close_transport()
                    raise
        except SMTPException:
            raise
        except OSError as exc:
            raise self._transport_error(exc, "waiting for a reply") from exc
        return reply

    def _next_reply(self) -> Reply | None:
        try:
            return self._session.next_reply()
        except SMTPResponseException:
            # A malformed or over-long reply: nothing after it can be paired.
            self._close_transport()
            raise

    async def _start_tls(self) -> None:
        transport, conn = self._require_transport()
        if conn.buffered:
            # RFC 3207 §4.2: what came after the 220 and before the handshake
            # would otherwise pass for replies sent under TLS.
            self._close_transport()
            raise RemoteProtocolError(
                -1, "server sent data after its 220 reply to STARTTLS"
            )
        assert self._starttls_context is not None
        loop = asyncio.get_running_loop()
        with self._transport_errors("during the TLS handshake", handshake=True):
            async with asyncio.timeout(self._effective_timeout()):
                tls = await loop.start_tls(
                    transport,
                    conn,
                    self._starttls_context,
                    server_hostname=self._host,
                )
        if tls is None:
            self._close_transport()
            raise SMTPServerDisconnected("Connection lost during the TLS handshake")
        self._transport = conn.transport = tls
        self._log_tls()

    def _log_tls(self) -> None:
        if session_log.isEnabledFor(logging.DEBUG) and self._transport is not None:
            tls = self._transport.get_extra_info("ssl_object")
            if tls is not None:
                session_log.debug("TLS: %s %s", tls.version(), tls.cipher())

    def _close_transport(self) -> None:
        self._session.state = State.CLOSED
        self._held, self._held_size = [], 0
        transport, conn = self._transport, self._conn
        self._transport = self._conn = None
        if transport is not None:
            # Kept so that wait_closed() can wait for the transport to go.
            self._closing = conn
            transport.close()

    # -- connection -----------------------------------------------------------

    def _split_host(self, host: str, port: int) -> tuple[str, int]:
        if not port and host.find(":") == host.rfind(":"):
            i = host.rfind(":")
            if i >= 0:
                host, text = host[:i], host[i + 1 :]
                try:
                    port = int(text)
                except ValueError:
                    raise OSError("nonnumeric port") from None
        if not port:
            port = SMTP_SSL_PORT if self.use_tls else self.default_port
        return host, port

    async def connect(
        self,
        host: str | None = None,
        port: int = 0,
        source_address: tuple[str, int] | None = None,
        *,
        use_tls: bool | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        """Connect and read the greeting; returns its ``(code, text)``.

        Arguments left out keep the values given to the constructor. Like
        the blocking ``connect()``, a greeting other than 220 is returned,
        and the client is closed; ``async with`` raises
        :class:`SMTPConnectError` instead.

        Raises:
            ValueError: ``timeout`` is 0.
            OSError: the connection failed, or the port is not a number.
            ssl.SSLError: the implicit TLS handshake or verification failed.
            SMTPTimeoutError: no connection or greeting within the timeout.
            SMTPServerDisconnected: the server closed before its greeting.
        """
        if use_tls is not None:
            self.use_tls = use_tls
        if tls_context is not None:
            self.tls_context = tls_context
        if source_address:
            self.source_address = source_address
        if host is None:
            host, port = self._host or "localhost", port or self._port
        host, port = self._split_host(host, port)
        timeout = self._effective_timeout()
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        sys.audit("smtpc.connect", self, host, port)
        if self._transport is not None:
            self._close_transport()
        self._host, self._port = host, port
        self._session = self._new_session()
        self._session.state = State.CLOSED
        loop = asyncio.get_running_loop()
        with self._transport_errors("connecting", handshake=True):
            async with asyncio.timeout(timeout):
                transport, conn = await self._open(loop, host, port)
        assert isinstance(transport, asyncio.Transport)
        self._transport, self._conn = transport, conn
        self._session = self._new_session()
        self._session.tls = self.use_tls
        reply: Reply = await self._run(self._session.greeting())
        if session_log.isEnabledFor(logging.DEBUG):
            session_log.debug("connected to %s:%s: %s", host, port, reply.code)
            self._log_tls()
        if self.debuglevel > 0:
            self._print_debug("connect:", repr(reply.message))
        return reply.as_tuple()

    async def _open(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> tuple[asyncio.BaseTransport, _Connection]:
        context = None
        if self.use_tls:
            context = operations.tls_context(self.tls_context, None, None)
        return await loop.create_connection(
            _Connection,
            host,
            port,
            ssl=context,
            server_hostname=host if context is not None else None,
            local_addr=self.source_address,
        )

    def close(self) -> None:
        """Close the connection to the server (no QUIT)."""
        self._close_transport()

    async def wait_closed(self) -> None:
        """Close, and wait (at most a second) until the transport is gone."""
        self._close_transport()
        conn, self._closing = self._closing, None
        if conn is not None:
            await conn.closed(_CLOSE_WAIT)

    async def quit(self) -> tuple[int, bytes]:
        """QUIT, then close."""
        reply: Reply = await self._run(self._session.quit())
        await self.wait_closed()
        return reply.as_tuple()

    # -- commands -------------------------------------------------------------

    async def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Send a command and return its reply's ``(code, text)``.

        Raises:
            ValueError: CR, LF or NUL in the command or its arguments.
            SMTPServerDisconnected: not connected, or the session was lost.
        """
        line = cmd if args == "" else f"{cmd} {args}"
        verb = cmd.split(" ", 1)[0].upper()
        if self._transport is None or self._session.state is State.CLOSED:
            raise SMTPServerDisconnected("please run connect() first")
        steps = self._session.command(
            verb, line.encode(self.command_encoding), check=False
        )
        reply: Reply = await self._run(steps)
        return reply.as_tuple()

    async def helo(self, name: str = "") -> tuple[int, bytes]:
        """HELO; the reply is kept in ``helo_resp``."""
        reply: Reply = await self._run(self._session.helo(name or self.local_hostname))
        return reply.as_tuple()

    async def ehlo(self, name: str = "") -> tuple[int, bytes]:
        """EHLO; on 250 the extension keywords fill ``esmtp_features``."""
        verb = self.ehlo_msg.upper()
        steps = self._session.ehlo(name or self.local_hostname, verb)
        reply: Reply = await self._run(steps)
        return reply.as_tuple()

    async def ehlo_or_helo_if_needed(self) -> None:
        """EHLO, or HELO if EHLO is refused, unless one was already accepted.

        Raises:
            SMTPHeloError: neither was accepted.
        """
        name = self.local_hostname
        await self._run(operations.hello(self._session, name, self.ehlo_msg.upper()))

    async def noop(self) -> tuple[int, bytes]:
        """NOOP."""
        return await self.docmd("noop")

    async def rset(self) -> tuple[int, bytes]:
        """RSET: end the current mail transaction."""
        self.command_encoding = "ascii"
        return await self.docmd("rset")

    async def verify(self, address: str) -> tuple[int, bytes]:
        """VRFY: ask the server to verify an address."""
        return await self.docmd("vrfy", addr_only(address))

    vrfy = verify

    async def expn(self, address: str) -> tuple[int, bytes]:
        """EXPN: ask the server to expand a mailing list."""
        return await self.docmd("expn", addr_only(address))

    async def help(self, args: str = "") -> bytes:
        """HELP; returns the reply text."""
        return (await self.docmd("help", args))[1]

    # -- AUTH and TLS -----------------------------------------------------------

    async def auth(
        self,
        mechanism: str,
        authobject: Callable[..., str | bytes | None],
        *,
        initial_response_ok: bool = True,
    ) -> tuple[int, bytes]:
        """AUTH with any mechanism, as the blocking client's ``auth()``.

        Raises:
            SMTPAuthenticationError: the server refused the credentials.
            RemoteProtocolError: the server sent too many challenges.
        """
        mechanism = mechanism.upper()
        steps = self._auth_steps(
            mechanism, authobject, initial_response_ok, _MAXCHALLENGE
        )
        try:
            result: tuple[int, bytes] = await self._run(steps)
        except SMTPAuthenticationError as exc:
            session_log.warning("AUTH %s refused: %d", mechanism, exc.smtp_code)
            raise
        session_log.info("AUTH %s: %d", mechanism, result[0])
        return result

    async def login(
        self,
        user: str,
        password: str | Callable[[], str],
        *,
        initial_response_ok: bool = True,
        mechanism: str | Mechanism | None = None,
    ) -> tuple[int, bytes]:
        """AUTH with the strongest mechanism both sides know, or ``mechanism``,
        as :meth:`smtpc.SMTP.login` does; after a 535 no weaker mechanism is
        tried.

        Raises:
            SMTPHeloError: EHLO/HELO failed.
            SMTPNotSupportedError: the server offers no AUTH.
            SMTPAuthenticationError: the credentials were refused.
            SMTPException: no mechanism in common.
        """
        await self.ehlo_or_helo_if_needed()
        steps = self._login_steps(
            user, password, initial_response_ok, _MAXCHALLENGE, mechanism
        )
        result: tuple[int, bytes] = await self._run(steps)
        return result

    async def starttls(
        self,
        keyfile: str | None = None,
        certfile: str | None = None,
        context: ssl.SSLContext | None = None,
        *,
        server_hostname: str | None = None,
    ) -> tuple[int, bytes]:
        """STARTTLS (RFC 3207) with asyncio's ``start_tls``; the engine then
        forgets what EHLO said, as the RFC asks. The certificate is checked
        against the host given to :meth:`connect`, or ``server_hostname``.

        Raises:
            SMTPNotSupportedError: the server does not offer STARTTLS.
            SMTPResponseException: STARTTLS was refused.
            ssl.SSLError: the handshake or the verification failed.
        """
        await self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise SMTPNotSupportedError("STARTTLS extension not supported by server.")
        self._starttls_context = operations.tls_context(context, keyfile, certfile)
        if server_hostname is not None:
            self._host = server_hostname
        reply: Reply = await self._run(self._session.starttls())
        if reply.code != ReplyCode.SERVICE_READY:
            raise SMTPResponseException(reply.code, reply.message, reply)
        return reply.as_tuple()

    # -- mail transactions ----------------------------------------------------

    async def deliver(
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

        A refusal is not an exception: the result tells, recipient by
        recipient. The session is left ready for the next transaction, or
        closed after a 421.

        Raises:
            SMTPNotSupportedError: the message or an address needs an
                extension the server does not offer.
            SMTPSenderRefused: the message is larger than the server's SIZE.
            SMTPServerDisconnected: the session was lost; its ``result``
                attribute tells what had been accepted.
            ValueError, TypeError: bad addresses or message, before any byte
                of the transaction is sent.
        """
        await self.ehlo_or_helo_if_needed()
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
            result: TransactionResult = await self._bounded(steps)
        except SMTPServerDisconnected as exc:
            # What was accepted before the session was lost.
            self.last_result = getattr(exc, "result", None)
            raise
        self.last_result = result
        operations.log_transaction(self._host, result)
        return result

    async def deliver_many(
        self, messages: Iterable[tuple[str, str | Sequence[str], Any]]
    ) -> list[TransactionResult]:
        """Send ``(from_addr, to_addrs, msg)`` messages back to back, as the
        blocking :meth:`smtpc.SMTP.deliver_many` does.

        With PIPELINING each message's end of content goes in one write with
        the next message's MAIL, RCPT and DATA (RFC 2920 §3.1), so a message
        costs about one round trip instead of two. ``messages`` is read one
        message at a time, as the previous one's content ends: an iterator
        may hand out what is ready and stop, and the batch ends there.

        Returns:
            One :class:`~smtpc.engine.TransactionResult` per message, in order.

        Raises:
            what :meth:`deliver` raises, for the message that has it; the
            results before it are in :attr:`last_results`. When the session
            is lost, every message sent so far is in :attr:`last_results`,
            the one under way with the reply it had got.
        """
        await self.ehlo_or_helo_if_needed()
        results: list[TransactionResult] = []
        self.last_results = results
        await self._deliver_each(messages, results.append)
        return results

    async def _deliver_each(
        self,
        messages: Iterable[tuple[str, str | Sequence[str], Any]],
        done: Callable[[TransactionResult], object],
    ) -> None:
        """:meth:`deliver_many` with ``done`` called with each result as it
        is known, from within the steps: it must not raise."""
        host = self._host
        logged = session_log.isEnabledFor(logging.INFO)

        def each(result: TransactionResult) -> None:
            if logged:
                operations.log_transaction(host, result)
            self.last_result = result
            done(result)

        steps = operations.many(
            self._session,
            messages,
            each,
            pipelining=self.pipelining,
            chunking=self.chunking,
        )
        await self._bounded(steps)

    async def sendmail(
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

        Raises:
            SMTPHeloError: EHLO/HELO failed.
            SMTPRecipientsRefused: every recipient was refused.
            SMTPSenderRefused: MAIL FROM was refused.
            SMTPDataError: the message content was refused.
            SMTPNotSupportedError: an extension the message needs is missing.
        """
        result = await self.deliver(
            from_addr,
            to_addrs,
            msg,
            mail_options,
            rcpt_options,
            dsn=dsn,
            requiretls=requiretls,
        )
        return operations.smtplib_outcome(result, from_addr)

    async def send_message(
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
        await self.ehlo_or_helo_if_needed()
        from_addr, to_addrs, data, mail_options = operations.message_envelope(
            msg,
            from_addr,
            to_addrs,
            mail_options,
            self.has_extn("smtputf8"),
            self.has_extn("8bitmime"),
        )
        return await self.sendmail(
            from_addr, to_addrs, data, mail_options, rcpt_options
        )


class LMTP(SMTP):
    """LMTP (RFC 2033) on asyncio; also over a Unix socket when ``host`` is
    a path. Each accepted recipient gets its own reply after the message
    content, kept in :attr:`SMTP.last_result`."""

    ehlo_msg = "lhlo"
    default_port = LMTP_PORT
    _lmtp = True

    async def _open(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> tuple[asyncio.BaseTransport, _Connection]:
        if not host.startswith("/"):
            return await super()._open(loop, host, port)
        return await loop.create_unix_connection(_Connection, host)

    def _split_host(self, host: str, port: int) -> tuple[str, int]:
        if host.startswith("/"):
            return host, port
        return super()._split_host(host, port)
