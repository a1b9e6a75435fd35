"""Many messages over a few reused sessions: a pool and a bulk sender.

:class:`Pool` keeps up to ``size`` sessions to one server open and lends
them out, one task at a time. :class:`BulkSender` sends a stream of
messages over the pool, each session in pipelined batches (RFC 2920: about
one round trip a message), retries temporary failures with exponential
back-off, and gives one :class:`MessageResult` per message, with every
recipient's outcome. :class:`BackgroundSender` runs a bulk sender in its own
thread for programs that are not async.

The blocking client (:class:`smtpc.SMTP`) is one session per thread: to
send from several threads without asyncio, give each thread its own client,
or submit to a :class:`BackgroundSender`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import enum
import logging
import os
import threading
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .aio import SMTP
from .client import DEFAULT_TIMEOUT
from .engine.replies import Reply, ReplyCode
from .engine.transaction import TransactionResult
from .errors import (
    SMTPConnectError,
    SMTPException,
    SMTPNotSupportedError,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from .sources import is_reusable

if TYPE_CHECKING:
    import ssl

    from .routing import _TLSPolicy

__all__ = [
    "BackgroundSender",
    "BulkMessage",
    "BulkSender",
    "MessageResult",
    "Outcome",
    "Pool",
    "RecipientOutcome",
]

log = logging.getLogger("smtpc.pool")

# Messages one deliver_many call sends back to back: each batch ends with a
# final reply that nothing follows, one round trip more.
DEFAULT_BATCH_SIZE = 32


# --- the pool -----------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Member:
    client: SMTP
    messages: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    # Set by DirectPools: the session's TLS version, and why it is in clear
    # text though STARTTLS was tried.
    tls: str | None = None
    tls_fallback: str | None = None


class Pool:
    """A bounded set of sessions to one server, reused across messages.

    A session is opened when none is idle (connect, EHLO, STARTTLS and EHLO
    again if asked, AUTH if credentials are given), lent to one task at a
    time by :meth:`session`, and kept for the next one afterwards. One that
    the server closed (or ended with 421) is dropped and the next borrower
    gets a new one; one that has carried ``max_messages`` messages is ended
    with QUIT; one idle longer than ``idle_check`` seconds is checked with
    NOOP before it is lent again.

    Args:
        host, port: the server (port 25, or 465 with ``use_tls``).
        size: most sessions open at once.
        max_messages: most messages one session carries.
        idle_check: seconds of idleness after which NOOP checks a session.
        use_tls: implicit TLS (RFC 8314).
        starttls: STARTTLS (RFC 3207) after the first EHLO.
        tls_context: the TLS context; by default one that verifies.
        user, password: AUTH credentials, if the server needs them.
        local_hostname, timeout, pipelining, chunking, buffer_size: as for
            :class:`smtpc.aio.SMTP`.

    Raises:
        ValueError: ``size`` or ``max_messages`` below 1, or both TLS modes.
    """

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        size: int = 4,
        max_messages: int = 100,
        idle_check: float = 30.0,
        use_tls: bool = False,
        starttls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        user: str | None = None,
        password: str | None = None,
        local_hostname: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        pipelining: bool = True,
        chunking: bool = True,
        buffer_size: int | None = None,
    ) -> None:
        if size < 1 or max_messages < 1:
            raise ValueError("size and max_messages must be at least 1")
        if use_tls and starttls:
            raise ValueError("use_tls and starttls are mutually exclusive")
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        self.host, self.port, self.size = host, port, size
        self.max_messages = max_messages
        self.idle_check = idle_check
        self._use_tls, self._starttls = use_tls, starttls
        self._tls_context = tls_context
        self._credentials: tuple[str, str] | None = None
        if user is not None and password is not None:
            self._credentials = (user, password)
        self._client_options: dict[str, Any] = {
            "local_hostname": local_hostname,
            "timeout": timeout,
            "pipelining": pipelining,
            "chunking": chunking,
        }
        if buffer_size is not None:
            self._client_options["buffer_size"] = buffer_size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Member] = []
        self._open_count = 0
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<Pool {self.host}:{self.port} size={self.size} "
            f"open={self._open_count} idle={len(self._idle)}>"
        )

    @property
    def open_sessions(self) -> int:
        """Sessions open now, lent out or idle."""
        return self._open_count

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[SMTP]:
        """Borrow a ready session (after EHLO, TLS and AUTH) for one message.

        Raises:
            OSError, SMTPException: a new session could not be opened.
            RuntimeError: the pool is closed.
        """
        member = await self._acquire()
        try:
            yield member.client
        finally:
            await self._release(member)

    async def _acquire(self) -> _Member:
        if self._closed:
            raise RuntimeError("the pool is closed")
        await self._slots.acquire()
        try:
            while self._idle:
                member = self._idle.pop()
                if await self._usable(member):
                    return member
            return await self._open()
        except BaseException:
            self._slots.release()
            raise

    async def _usable(self, member: _Member) -> bool:
        client = member.client
        if client.is_connected and (
            time.monotonic() - member.idle_since <= self.idle_check
        ):
            return True
        if client.is_connected:
            with contextlib.suppress(SMTPException, OSError):
                if (await client.noop())[0] == ReplyCode.COMPLETED:
                    return True
        self._drop(member, "closed by the server or failed NOOP")
        return False

    async def _open(self) -> _Member:
        client = SMTP(
            self.host,
            self.port,
            use_tls=self._use_tls,
            tls_context=self._tls_context,
            **self._client_options,
        )
        self._open_count += 1
        member = _Member(client)
        try:
            await self._start(member)
        except BaseException:
            self._drop(member, "could not be set up")
            raise
        log.debug("session opened to %s:%s", self.host, self.port)
        return member

    async def _start(self, member: _Member) -> None:
        """Connect, EHLO, then STARTTLS and AUTH as asked."""
        client = member.client
        code, text = await client.connect()
        if code != ReplyCode.SERVICE_READY:
            raise SMTPConnectError(code, text)
        await client.ehlo_or_helo_if_needed()
        if self._starttls:
            await client.starttls(context=self._tls_context)
            await client.ehlo_or_helo_if_needed()
        if self._credentials is not None:
            await client.login(*self._credentials)

    async def _release(self, member: _Member, messages: int = 1) -> None:
        """Take back a session that carried ``messages`` more messages."""
        try:
            member.messages += messages
            client = member.client
            if not client.is_connected:
                self._drop(member, "closed")
            elif self._closed or member.messages >= self.max_messages:
                with contextlib.suppress(SMTPException, OSError):
                    await client.quit()
                self._drop(member, "ended with QUIT")
            else:
                member.idle_since = time.monotonic()
                self._idle.append(member)
        finally:
            self._slots.release()

    def _drop(self, member: _Member, why: str) -> None:
        member.client.close()
        self._open_count -= 1
        log.debug("session to %s:%s %s", self.host, self.port, why)

    async def close(self) -> None:
        """QUIT every idle session, all at once; sessions lent out end when
        returned."""
        self._closed = True
        idle, self._idle = self._idle, []

        async def end(member: _Member) -> None:
            try:
                with contextlib.suppress(SMTPException, OSError):
                    await member.client.quit()
            finally:
                self._drop(member, "ended with QUIT")

        await asyncio.gather(*(end(member) for member in idle))


class DirectPools:
    """Sessions straight to each recipient domain's mail exchangers (RFC 5321
    §5): a :class:`Pool` per host, made on first use, hosts tried in the
    order :class:`~smtpc.routing.MXResolver` gives. A :class:`BulkSender`
    given one delivers directly instead of through one relay.

    Each session follows a TLS policy, with the meaning it has for
    :class:`~smtpc.routing.Router`: under ``"may"``, a session whose TLS
    handshake failed is opened again in clear text; under ``"encrypt"`` and
    ``"verify"``, a host that cannot give TLS is passed over for the next
    one. Each :class:`RecipientOutcome` tells whether the session that gave
    its final reply was TLS.

    Args:
        resolver: the MX resolver (its nameserver, port and timeout).
        port: the mail exchangers' SMTP port.
        size: sessions at once to each host.
        tls: the TLS policy, one of :data:`smtpc.routing.TLS_POLICIES`:
            ``"may"`` (default: STARTTLS when offered, the certificate not
            verified), ``"encrypt"`` (STARTTLS required, not verified),
            ``"verify"`` (STARTTLS required, the certificate valid for the
            MX host name found in the DNS) or ``"none"`` (clear text).
        tls_context: the context for STARTTLS; by default one that encrypts
            without verifying for ``"may"`` and ``"encrypt"``, and one that
            verifies against the system's trusted certificates for
            ``"verify"``.
        pool_options: what else each :class:`Pool` takes (``max_messages``,
            ``timeout``, ``local_hostname``...).

    Raises:
        ValueError: a bad port or size; a bad ``tls``; a ``tls_context``
            with ``tls="none"``, or one that does not verify with
            ``tls="verify"``; ``use_tls`` or ``starttls`` among the pool
            options.
        TypeError: ``tls_context`` is not an ``ssl.SSLContext``.
    """

    def __init__(
        self,
        resolver: Any,
        *,
        port: int = 25,
        size: int = 2,
        tls: str = "may",
        tls_context: ssl.SSLContext | None = None,
        **pool_options: Any,
    ) -> None:
        from .routing import _TLSPolicy

        if not 0 < port < 65536:
            raise ValueError(f"bad port {port!r}")
        if size < 1:
            raise ValueError("size must be at least 1")
        for option in ("use_tls", "starttls"):
            if option in pool_options:
                raise ValueError(f"DirectPools takes tls=, not {option}=")
        self._policy = _TLSPolicy(tls, tls_context)
        self.resolver = resolver
        self.port = port
        self.size = size
        self.tls = tls
        self.tls_context = tls_context
        self._options = pool_options
        self._pools: dict[tuple[str, str], Pool] = {}
        self._candidates: dict[str, list[Any]] = {}

    async def __aenter__(self) -> DirectPools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def candidates(self, domain: str) -> list[Any]:
        """The hosts to try for ``domain``, best first (looked up once).

        Raises:
            smtpc.routing.RoutingError: no host can take mail for the domain.
        """
        if domain not in self._candidates:
            found = await asyncio.to_thread(self.resolver.resolve, domain)
            self._candidates[domain] = found
        return self._candidates[domain]

    def pool(self, address: str, host: str | None = None) -> Pool:
        """The pool of sessions to one mail exchanger's address.

        Args:
            address: where the sessions go.
            host: the MX host name found in the DNS, which the certificate
                is checked against (an address literal, or None: the
                address).
        """
        name = self._policy.server_name(host, address) if host else address
        key = (address, name)
        if key not in self._pools:
            self._pools[key] = _MXPool(
                address, self.port, name, self._policy, size=self.size, **self._options
            )
        return self._pools[key]

    async def close(self) -> None:
        """QUIT the idle sessions of every host."""
        for pool in self._pools.values():
            await pool.close()


class _MXPool(Pool):
    """The sessions to one mail exchanger, each opened under the TLS policy
    of its :class:`DirectPools` (the same decisions as
    :class:`~smtpc.routing.Router`'s)."""

    def __init__(
        self, address: str, port: int, name: str, policy: _TLSPolicy, **options: Any
    ) -> None:
        super().__init__(address, port, **options)
        self._name = name
        self._policy = policy

    async def _start(self, member: _Member) -> None:
        """Connect and EHLO; STARTTLS and EHLO again as the policy asks;
        AUTH if credentials were given.

        Raises:
            smtpc.routing._Skip: the host cannot give what the policy
                requires, or closed the session with 421.
        """
        from .routing import _Reconnect, _Skip

        client = member.client
        await self._hello(client)
        if self._policy.starttls:
            try:
                member.tls, member.tls_fallback = await self._secure(client)
            except _Skip:
                # Passed over, but the session is still open: end it politely.
                if client.is_connected:
                    with contextlib.suppress(SMTPException, OSError):
                        await client.quit()
                raise
            except _Reconnect as reconnect:
                # The failed handshake left nothing to speak SMTP on; RFC
                # 7435 prefers clear text to no delivery, and STARTTLS would
                # only fail again.
                log.warning(
                    "%s [%s]:%d: %s; reconnecting in clear text",
                    self._name,
                    self.host,
                    self.port,
                    reconnect.reason,
                )
                member.tls_fallback = (
                    f"{reconnect.reason}; retried on a new clear-text session"
                )
                await self._hello(client)
        if self._credentials is not None:
            await client.login(*self._credentials)

    async def _hello(self, client: SMTP) -> None:
        # The address, not the client's host: STARTTLS set that to the name.
        code, text = await client.connect(self.host, self.port)
        if code != ReplyCode.SERVICE_READY:
            raise SMTPConnectError(code, text)
        await client.ehlo_or_helo_if_needed()

    async def _secure(self, client: SMTP) -> tuple[str | None, str | None]:
        """STARTTLS under the policy, then EHLO again (RFC 3207 §4.2).

        Returns:
            ``(version, None)`` once the session is TLS; ``(None, why)``
            when it goes on in clear text, ``why`` None when STARTTLS is
            not offered.
        """
        policy = self._policy
        if not policy.offered(client.has_extn("starttls")):
            return None, None
        try:
            await client.starttls(context=policy.context(), server_hostname=self._name)
        except OSError as exc:
            return None, policy.failed(exc, client.is_connected, client.last_reply)
        await client.ehlo_or_helo_if_needed()
        version = client.tls_version
        log.debug("%s [%s]:%d: STARTTLS, %s", self._name, self.host, self.port, version)
        return version or "TLS", None


# --- bulk sending ---------------------------------------------------------------


@dataclass(slots=True)
class BulkMessage:
    """One message to send: its envelope and its content.

    ``content`` is anything ``sendmail`` accepts, or a path, opened for
    each attempt. Bytes, str, messages, paths and seekable files can be
    sent again after a temporary failure; another iterable only once.
    """

    reverse_path: str
    forward_paths: Sequence[str]
    content: Any = field(repr=False)
    id: str | None = None
    mail_options: Sequence[str] = ()
    rcpt_options: Sequence[str] = ()


class Outcome(enum.Enum):
    """What became of one recipient of one message."""

    DELIVERED = "delivered"  # the final reply was 250
    REFUSED = "refused"  # a 5xx reply: not to be tried again
    DEFERRED = "deferred"  # still temporary after the last attempt


@dataclass(slots=True)
class RecipientOutcome:
    """One forward-path's outcome and the reply that decided it.

    ``error`` explains an outcome no reply decided: a lost session, an
    envelope the server cannot take, a stop before the next attempt.

    With :class:`DirectPools`, ``tls`` is the TLS protocol version
    (``"TLSv1.3"``) of the session that gave the final reply, None when it
    was in clear text or no session did; ``tls_fallback`` says why that
    session was in clear text though the ``"may"`` policy tried STARTTLS
    (refused, or a failed handshake and a new session).
    """

    address: str
    outcome: Outcome
    reply: Reply | None = None
    error: str | None = None
    tls: str | None = None
    tls_fallback: str | None = None


@dataclass(slots=True)
class MessageResult:
    """Every recipient's outcome for one message, in the order given."""

    id: str | None
    reverse_path: str
    recipients: list[RecipientOutcome]
    attempts: int

    def _with(self, outcome: Outcome) -> list[str]:
        return [r.address for r in self.recipients if r.outcome is outcome]

    @property
    def delivered(self) -> list[str]:
        return self._with(Outcome.DELIVERED)

    @property
    def refused(self) -> list[str]:
        return self._with(Outcome.REFUSED)

    @property
    def deferred(self) -> list[str]:
        return self._with(Outcome.DEFERRED)


class _Replay:
    """The content for each attempt; files are rewound, paths reopened."""

    def __init__(self, content: Any) -> None:
        self.content = content
        self.start: int | None = None
        self.used = False

    @property
    def replayable(self) -> bool:
        content = self.content
        if is_reusable(content) or isinstance(content, os.PathLike):
            return True
        if hasattr(content, "read"):
            return self.start is not None
        return not isinstance(content, Iterable)

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        content = self.content
        if isinstance(content, os.PathLike):
            with open(content, "rb") as file:
                yield file
            return
        if hasattr(content, "read"):
            if self.start is None and not self.used:
                with contextlib.suppress(OSError, AttributeError, ValueError):
                    if content.seekable():
                        self.start = content.tell()
            elif self.start is not None:
                content.seek(self.start)
        self.used = True
        yield content


class _Attempt:
    """Sorts one attempt's replies into final outcomes and retries."""

    def __init__(self, pending: list[str]) -> None:
        self.pending = pending
        self.final: dict[str, RecipientOutcome] = {}
        self.retry: dict[str, tuple[Reply | None, str | None]] = {}

    def settle(self, address: str, outcome: Outcome, reply: Reply | None) -> None:
        self.final[address] = RecipientOutcome(address, outcome, reply)

    def temporary(self, address: str, reply: Reply | None, error: str | None) -> None:
        self.retry[address] = (reply, error)

    def all_pending(self, reply: Reply | None, error: str | None = None) -> None:
        """The same fate for every recipient: refused on 5xx, else retried."""
        for address in self.pending:
            if address in self.final:
                continue
            if reply is not None and reply.is_permanent:
                self.final[address] = RecipientOutcome(
                    address, Outcome.REFUSED, reply, error
                )
            else:
                self.temporary(address, reply, error)

    def lost(self, result: TransactionResult | None, error: str) -> None:
        """The session was lost before the transaction's end: whatever was
        settled before (LMTP replies) stands; the rest is tried again."""
        if result is not None:
            for r in result.recipients:
                if r.final is not None and r.accepted:
                    self.settle(r.address, Outcome.DELIVERED, r.final)
        self.all_pending(None, error)

    def refuse_all(self, reply: Reply | None, error: str) -> None:
        for address in self.pending:
            self.final[address] = RecipientOutcome(
                address, Outcome.REFUSED, reply, error
            )

    def read(self, result: TransactionResult) -> None:
        """Outcomes from one transaction's replies (RFC 5321 §4.2.1, §4.2.5)."""
        mail = result.mail
        if mail is None or mail.code != ReplyCode.COMPLETED:
            self.all_pending(mail)
            return
        for recipient in result.recipients:
            address, rcpt = recipient.address, recipient.reply
            if rcpt is None:
                self.temporary(address, None, "no reply to RCPT")
                continue
            if rcpt.code not in (ReplyCode.COMPLETED, ReplyCode.WILL_FORWARD):
                if rcpt.is_permanent:
                    self.settle(address, Outcome.REFUSED, rcpt)
                else:
                    self.temporary(address, rcpt, None)
                continue
            # Accepted at RCPT: the reply after the content decides (LMTP:
            # this recipient's own reply, RFC 2033 §4.2).
            final = recipient.final or result.final or result.data
            if final is None:
                self.temporary(address, None, "no reply to the message content")
            elif final.code == ReplyCode.COMPLETED:
                self.settle(address, Outcome.DELIVERED, final)
            elif final.is_permanent:
                self.settle(address, Outcome.REFUSED, final)
            else:
                self.temporary(address, final, None)


class _Job:
    """One message on its way through a :class:`Pool`: its recipients still
    pending, the outcomes so far, and the attempt under way."""

    __slots__ = (
        "message",
        "order",
        "pending",
        "outcomes",
        "last",
        "replay",
        "attempts",
        "attempt",
        "finish",
    )
    attempt: _Attempt  # set for each attempt

    def __init__(
        self, message: BulkMessage, finish: Callable[[MessageResult], object]
    ) -> None:
        self.message = message
        self.order = list(dict.fromkeys(message.forward_paths))
        self.pending = self.order
        self.outcomes: dict[str, RecipientOutcome] = {}
        self.last: dict[str, tuple[Reply | None, str | None]] = {}
        self.replay = _Replay(message.content)
        self.attempts = 0
        self.finish = finish


class _Lane:
    """The messages waiting for a session of one :class:`Pool`, and the
    tasks that send them: at most ``pool.size``, each holding a session.

    A task takes the next waiting message each time the one before it has
    gone out (RFC 2920 §3.1: its end of content leads the next message's
    commands), up to ``batch_size`` messages in one
    :meth:`~smtpc.aio.SMTP.deliver_many` call; when none is waiting, the
    batch ends, and the task gives its session back once none is left.
    """

    def __init__(self, sender: BulkSender, pool: Pool) -> None:
        self.sender = sender
        self.pool = pool
        self.queue: collections.deque[_Job] = collections.deque()
        self.tasks: set[asyncio.Task[None]] = set()
        # Tasks that took their last message and are giving the session back.
        self.leaving: set[asyncio.Task[None]] = set()

    def push(self, job: _Job) -> None:
        self.queue.append(job)
        workers = len(self.tasks) - len(self.leaving)
        if workers < self.pool.size and workers < len(self.queue):
            task = asyncio.get_running_loop().create_task(self._work())
            self.tasks.add(task)
            task.add_done_callback(self._gone)

    def _gone(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.leaving.discard(task)

    def withdraw(self, job: _Job) -> bool:
        """Take back a message that is still waiting; False once it is sent."""
        try:
            self.queue.remove(job)
        except ValueError:
            return False
        return True

    def abort(self) -> None:
        """Abandon the batches under way and the messages waiting."""
        for task in self.tasks:
            task.cancel()
        queue, self.queue = self.queue, collections.deque()
        for job in queue:
            job.attempt.all_pending(None, "stopped")
            self.sender._attempt_done(job)

    async def wait_idle(self) -> None:
        """Wait until every task has given its session back."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        sender, pool = self.sender, self.pool
        member: _Member | None = None
        try:
            while self.queue and not sender._abort.is_set():
                if member is None:
                    # The queue is looked at again after the wait.
                    member = await self._borrow()
                    continue
                if self._single_next():
                    await self._send_alone(member, self.queue.popleft())
                else:
                    await self._send_batch(member)
                if not (
                    member.client.is_connected and member.messages < pool.max_messages
                ):
                    await pool._release(member, 0)
                    member = None
        finally:
            # Before any await: a message pushed from now on starts a task.
            self.leaving.add(task)
            if member is not None:
                await pool._release(member, 0)

    async def _borrow(self) -> _Member | None:
        """A session from the pool; when none can be opened, the message
        next in line takes the failure, as it would have alone."""
        try:
            member = await self.pool._acquire()
        except (SMTPException, OSError) as exc:
            # EHLO, TLS, AUTH or connect failed.
            reply = exc.reply if isinstance(exc, SMTPResponseException) else None
            transient = reply if reply is not None and reply.is_transient else None
            error = f"{type(exc).__name__}: {exc}"
            if self.queue:
                job = self.queue.popleft()
                job.attempt.all_pending(transient, error)
                self.sender._attempt_done(job)
        except Exception as exc:
            # The pool cannot lend sessions any more (closed): no retry.
            error = f"{type(exc).__name__}: {exc}"
            while self.queue:
                self.sender._give_up(self.queue.popleft(), error)
        else:
            client = member.client
            if client.pipelining and client.has_extn("pipelining"):
                self.sender._pipelined()
            return member
        return None

    def _single_next(self) -> bool:
        # Envelope parameters go with deliver(), one message at a time.
        message = self.queue[0].message
        return bool(message.mail_options or message.rcpt_options)

    async def _send_alone(self, member: _Member, job: _Job) -> None:
        member.messages += 1
        sender = self.sender
        message = job.message
        try:
            with job.replay.open() as content:
                result = await member.client.deliver(
                    message.reverse_path,
                    job.attempt.pending,
                    content,
                    message.mail_options,
                    message.rcpt_options,
                )
        except asyncio.CancelledError:
            job.attempt.all_pending(None, "stopped during the transaction")
            sender._attempt_done(job)
            raise
        except BaseException as exc:
            _settle_failure(job.attempt, exc, at_fault=True)
            sender._attempt_done(job)
            if not isinstance(exc, Exception):
                raise
        else:
            job.attempt.read(result)
            sender._attempt_done(job)

    async def _send_batch(self, member: _Member) -> None:
        """Waiting messages through one deliver_many call, taken one by one
        as each message's content goes out."""
        sender = self.sender
        queue = self.queue
        limit = min(sender.batch_size, self.pool.max_messages - member.messages)
        sent: collections.deque[_Job] = collections.deque()
        # Each message's content stays open until its result is in: two at
        # most at once, however long the batch.
        opened: dict[_Job, contextlib.ExitStack] = {}

        def close(job: _Job) -> None:
            if not opened:
                return
            stack = opened.pop(job, None)
            if stack is not None:
                with contextlib.suppress(OSError):
                    stack.close()

        def take() -> Iterator[tuple[str, list[str], Any]]:
            taken = 0
            while taken < limit and queue and not sender._abort.is_set():
                if taken and self._single_next():
                    return
                job = queue.popleft()
                taken += 1
                member.messages += 1
                content = job.message.content
                if type(content) is not bytes:
                    stack = contextlib.ExitStack()
                    try:
                        content = stack.enter_context(job.replay.open())
                    except Exception as exc:
                        # Its file cannot be opened: another attempt would
                        # fail the same way. The batch goes on without it.
                        error = f"{type(exc).__name__}: {exc}"
                        job.attempt.refuse_all(None, error)
                        sender._attempt_done(job)
                        continue
                    opened[job] = stack
                sent.append(job)
                yield job.message.reverse_path, job.attempt.pending, content

        def done(result: TransactionResult) -> None:
            job = sent.popleft()
            close(job)
            _read_result(job.attempt, result)
            sender._attempt_done(job)

        try:
            await member.client._deliver_each(take(), done)
        except asyncio.CancelledError:
            for job in sent:
                close(job)
                job.attempt.all_pending(None, "stopped during the transaction")
                sender._attempt_done(job)
            raise
        except BaseException as exc:
            # Every message sent before it has its result (deliver_many
            # reports them first); the one under way takes the failure.
            while sent:
                job = sent.popleft()
                close(job)
                if isinstance(exc, SMTPServerDisconnected):
                    job.attempt.lost(None, str(exc) or type(exc).__name__)
                else:
                    _settle_failure(job.attempt, exc, at_fault=not sent)
                sender._attempt_done(job)
            if not isinstance(exc, Exception):
                raise


def _read_result(attempt: _Attempt, result: TransactionResult) -> None:
    """Outcomes from one transaction of a batch."""
    error = result.error
    if error is None or _closed_by_421(result):
        attempt.read(result)
    else:
        # The session was lost before this transaction's end.
        attempt.lost(result, str(error) or type(error).__name__)


def _closed_by_421(result: TransactionResult) -> bool:
    replies = [result.mail, result.data, result.final]
    replies += [r.reply for r in result.recipients]
    return any(r is not None and r.code == 421 for r in replies)


def _settle_failure(attempt: _Attempt, exc: BaseException, *, at_fault: bool) -> None:
    """Outcomes when sending raised ``exc``; ``at_fault``: it was raised for
    this message (its envelope or its content), not for the session."""
    if isinstance(exc, SMTPServerDisconnected):
        # Whatever was settled before the session was lost (LMTP replies)
        # stands; the rest is tried again.
        partial = getattr(exc, "result", None)
        lost = partial if isinstance(partial, TransactionResult) else None
        attempt.lost(lost, str(exc) or type(exc).__name__)
    elif not at_fault:
        attempt.all_pending(None, f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, SMTPSenderRefused | SMTPNotSupportedError):
        # Raised before MAIL: the message cannot go to this server.
        reply = exc.reply if isinstance(exc, SMTPResponseException) else None
        attempt.refuse_all(reply, str(exc))
    elif isinstance(exc, SMTPException):
        reply = exc.reply if isinstance(exc, SMTPResponseException) else None
        attempt.all_pending(
            reply if reply is not None and reply.is_transient else None,
            f"{type(exc).__name__}: {exc}",
        )
    else:
        # The message itself is at fault (its file, its content, its
        # addresses): another attempt would fail the same way.
        attempt.refuse_all(None, f"{type(exc).__name__}: {exc}")


class BulkSender:
    """Sends a stream of messages over a :class:`Pool`, with retries.

    A temporary failure (a 4xx reply at any stage, a lost session, a
    session that could not be opened) is tried again after
    ``backoff * 2**(attempt - 1)`` seconds (at most ``max_backoff``), up to
    ``max_attempts`` attempts; a 5xx reply is final. A retry carries only
    the recipients still pending: one whose final reply was 250 is never
    sent the message again.

    Messages waiting for a session go in pipelined batches: a session that
    has sent a message's content takes the next waiting message at once, and
    its commands go out with the end of that content (RFC 2920 §3.1), so a
    message costs about one round trip instead of two. A batch ends when no
    message is waiting or after ``batch_size`` messages; each message still
    gets its own result, and a failure in a batch falls on the messages it
    hit only (a lost session: the message under way and any whose final
    reply had not come; a bad envelope or content: that message). Messages
    with ``mail_options`` or ``rcpt_options`` go one at a time. With
    :class:`DirectPools`, messages go one at a time.

    At most ``2 * pool.size`` messages are read from the input and not yet
    handed back as results, so memory stays bounded however many there are;
    ``3 * pool.size`` once a session to a :class:`Pool` offers PIPELINING
    (and ``batch_size`` is above 1), so that each session finds its next
    message waiting as the one before it ends.

    Args:
        pool: where the sessions come from; its ``size`` sets how many
            messages are sent at once.
        max_attempts: attempts per message, the first one included.
        backoff: seconds before the first retry.
        max_backoff: longest wait between two attempts.
        batch_size: most messages in one batch (one
            :meth:`~smtpc.aio.SMTP.deliver_many` call); the last final reply
            of a batch costs a round trip of its own, and a session goes on
            with the next batch while messages are waiting (1: one message
            at a time, two round trips each).

    Raises:
        ValueError: ``max_attempts`` or ``batch_size`` below 1.
    """

    def __init__(
        self,
        pool: Pool | DirectPools,
        *,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.pool = pool
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.batch_size = batch_size
        self._stop = asyncio.Event()
        self._abort = asyncio.Event()
        self._lane = _Lane(self, pool) if isinstance(pool, Pool) else None
        self._direct_tasks: set[asyncio.Task[None]] = set()
        # Messages read ahead per session, and the windows that count them.
        self._ahead = 2
        self._windows: set[_Window] = set()
        # Messages waiting before their next attempt.
        self._waiting: dict[_Job, asyncio.TimerHandle] = {}

    def stop(self, *, now: bool = False) -> None:
        """Read no more messages and start no more attempts.

        Transactions under way finish, unless ``now``: then they are
        abandoned (their sessions closed). Either way every message already
        read gets its result, its pending recipients deferred.
        """
        self._stop.set()
        if now:
            self._abort.set()
        waiting, self._waiting = self._waiting, {}
        for job, timer in waiting.items():
            timer.cancel()
            self._next_attempt(job)
        if now and self._lane is not None:
            self._lane.abort()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def send(
        self,
        messages: Iterable[BulkMessage | tuple[Any, ...]]
        | AsyncIterable[BulkMessage | tuple[Any, ...]],
    ) -> AsyncIterator[MessageResult]:
        """Send every message; yield each one's result as it is known.

        ``messages`` holds :class:`BulkMessage` objects or tuples
        ``(reverse_path, forward_paths, content[, id])``. Results come in
        the order messages finish, each carrying the message's ``id``.

        Raises:
            TypeError: an item is neither; the messages before it are
                still sent and their results given first.
        """
        # With DirectPools, size is per host: the window still bounds memory.
        window = _Window(self._ahead * self.pool.size)
        self._windows.add(window)
        feeder = asyncio.create_task(self._feed(messages, window))
        try:
            while True:
                item = await window.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                window.release(1)
                yield item
        finally:
            if not feeder.done():
                self.stop(now=True)
                # The feeder may wait for room that no reader will make.
                window.release(self._ahead * self.pool.size)
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            self._windows.discard(window)

    def _pipelined(self) -> None:
        """A session offers PIPELINING: read one more message ahead per
        session, so that each finds its next message waiting when the one
        before it ends (the one before that still awaiting its final reply)."""
        if self._ahead == 2 and self.batch_size > 1:
            self._ahead = 3
            for window in self._windows:
                window.release(self.pool.size)

    async def _feed(self, messages: Any, window: _Window) -> None:
        outstanding = 0
        settled = asyncio.Event()
        error: BaseException | None = None

        def finished(result: MessageResult) -> None:
            nonlocal outstanding
            window.put(result)
            outstanding -= 1
            if not outstanding:
                settled.set()

        try:
            # A plain loop for the usual synchronous input: an asynchronous
            # generator around it would cost a step per message.
            is_async = isinstance(messages, AsyncIterable)
            source = aiter(messages) if is_async else iter(messages)
            while True:
                try:
                    item = await anext(source) if is_async else next(source)
                except (StopIteration, StopAsyncIteration):
                    break
                message = _as_message(item)
                await window.acquire()
                if self.stopping:
                    window.release(1)
                    break
                outstanding += 1
                self._start(message, finished)
        except Exception as exc:
            error = exc
        finally:
            while outstanding:
                settled.clear()
                await settled.wait()
            if self._lane is not None:
                # Sessions go back to the pool before the caller closes it.
                await self._lane.wait_idle()
            window.put(_End(error))

    def _start(
        self, message: BulkMessage, finish: Callable[[MessageResult], object]
    ) -> None:
        """Start sending one message; ``finish`` gets its result."""
        if self._lane is not None:
            self._next_attempt(_Job(message, finish))
            return

        async def direct() -> None:
            try:
                result = await self._send_direct(message)
            except Exception as exc:
                # Every message gets its result line, whatever went wrong.
                why = f"{type(exc).__name__}: {exc}"
                result = MessageResult(
                    message.id,
                    message.reverse_path,
                    [
                        RecipientOutcome(a, Outcome.DEFERRED, None, why)
                        for a in dict.fromkeys(message.forward_paths)
                    ],
                    0,
                )
            finish(result)

        task = asyncio.create_task(direct())
        self._direct_tasks.add(task)
        task.add_done_callback(self._direct_tasks.discard)

    async def send_one(self, message: BulkMessage) -> MessageResult:
        """Send one message, with retries; never raises for a refusal or a
        lost session: the result tells. Messages sent at once from several
        tasks share the pool's sessions and go in batches."""
        if self._lane is None:
            return await self._send_direct(message)
        future: asyncio.Future[MessageResult] = (
            asyncio.get_running_loop().create_future()
        )

        def finish(result: MessageResult) -> None:
            if not future.done():
                future.set_result(result)

        job = _Job(message, finish)
        self._next_attempt(job)
        try:
            return await future
        except asyncio.CancelledError:
            # Not sent yet: it is not sent at all.
            timer = self._waiting.pop(job, None)
            if timer is not None:
                timer.cancel()
            else:
                self._lane.withdraw(job)
            raise

    # -- one message's attempts over a Pool ------------------------------------

    def _next_attempt(self, job: _Job) -> None:
        """Queue the next attempt, or give the result if none is to come."""
        assert self._lane is not None
        if job.attempts and self.stopping:
            for address in job.pending:
                job.last[address] = (job.last.get(address, (None, None))[0], "stopped")
            self._finish(job)
            return
        if job.attempts and not job.replay.replayable:
            why = "the content cannot be read again for a retry"
            job.last.update({a: (job.last[a][0], why) for a in job.pending})
            self._finish(job)
            return
        job.attempts += 1
        job.attempt = _Attempt(job.pending)
        if self._abort.is_set():
            job.attempt.all_pending(None, "stopped")
            self._attempt_done(job)
            return
        self._lane.push(job)

    def _attempt_done(self, job: _Job) -> None:
        """Take in an attempt's outcomes: retry what is pending, or finish."""
        attempt = job.attempt
        job.outcomes.update(attempt.final)
        if attempt.retry:
            job.last.update(attempt.retry)
            job.pending = [a for a in job.pending if a in attempt.retry]
        else:
            job.pending = []
        if not job.pending or job.attempts >= self.max_attempts:
            self._finish(job)
        elif self.stopping:
            self._next_attempt(job)
        else:
            delay = min(self.max_backoff, self.backoff * 2 ** (job.attempts - 1))
            log.warning(
                "message %s: %d recipients deferred, attempt %d in %.1f s",
                job.message.id,
                len(attempt.retry),
                job.attempts + 1,
                delay,
            )
            loop = asyncio.get_running_loop()
            self._waiting[job] = loop.call_later(delay, self._retry, job)

    def _retry(self, job: _Job) -> None:
        if self._waiting.pop(job, None) is not None:
            self._next_attempt(job)

    def _give_up(self, job: _Job, error: str) -> None:
        """Finish a message no attempt can be made for."""
        for address in job.pending:
            job.last[address] = (None, error)
        self._finish(job)

    def _finish(self, job: _Job) -> None:
        message = job.message
        for address in job.pending:
            reply, error = job.last.get(address, (None, None))
            job.outcomes[address] = RecipientOutcome(
                address, Outcome.DEFERRED, reply, error
            )
        result = MessageResult(
            message.id,
            message.reverse_path,
            [job.outcomes[a] for a in job.order],
            job.attempts,
        )
        _log_result(result)
        job.finish(result)

    # -- one message at a time, for DirectPools ------------------------------

    async def _send_direct(self, message: BulkMessage) -> MessageResult:
        order = list(dict.fromkeys(message.forward_paths))
        pending = list(order)
        outcomes: dict[str, RecipientOutcome] = {}
        last: dict[str, tuple[Reply | None, str | None]] = {}
        replay = _Replay(message.content)
        attempts = 0
        while pending:
            if self.stopping:
                for address in pending:
                    last[address] = (last.get(address, (None, None))[0], "stopped")
                break
            if attempts and not replay.replayable:
                why = "the content cannot be read again for a retry"
                last.update({a: (last[a][0], why) for a in pending})
                break
            attempts += 1
            attempt = _Attempt(pending)
            await self._attempt(message, replay, attempt)
            outcomes.update(attempt.final)
            last.update(attempt.retry)
            pending = [a for a in pending if a in attempt.retry]
            if pending and attempts < self.max_attempts:
                await self._wait_before_retry(message, attempts, attempt)
            elif pending:
                break
        for address in pending:
            reply, error = last.get(address, (None, None))
            outcomes[address] = RecipientOutcome(
                address, Outcome.DEFERRED, reply, error
            )
        result = MessageResult(
            message.id,
            message.reverse_path,
            [outcomes[a] for a in order],
            attempts,
        )
        _log_result(result)
        return result

    async def _attempt(
        self, message: BulkMessage, replay: _Replay, attempt: _Attempt
    ) -> None:
        assert isinstance(self.pool, DirectPools)
        task = asyncio.create_task(self._direct(self.pool, message, replay, attempt))
        abort = asyncio.create_task(self._abort.wait())
        try:
            await asyncio.wait({task, abort}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abort.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            attempt.all_pending(None, "stopped during the transaction")
            return
        task.result()

    async def _direct(
        self,
        pools: DirectPools,
        message: BulkMessage,
        replay: _Replay,
        attempt: _Attempt,
    ) -> None:
        """One transaction per recipient domain, to the first of its mail
        exchangers that gives a definitive answer (RFC 5321 §5)."""
        from .routing import RoutingError, domain_of

        domains: dict[str, list[str]] = {}
        for address in attempt.pending:
            try:
                domains.setdefault(domain_of(address), []).append(address)
            except ValueError as exc:
                attempt.final[address] = RecipientOutcome(
                    address, Outcome.REFUSED, None, str(exc)
                )
        for number, (domain, addresses) in enumerate(domains.items()):
            part = _Attempt(addresses)
            if number and not replay.replayable:
                part.all_pending(None, "the content cannot be read again")
            else:
                try:
                    candidates = await pools.candidates(domain)
                except RoutingError as exc:
                    if exc.permanent:
                        part.refuse_all(None, str(exc))
                    else:
                        part.all_pending(None, str(exc))
                else:
                    await self._to_first_host(pools, candidates, message, replay, part)
            attempt.final.update(part.final)
            attempt.retry.update(part.retry)

    async def _to_first_host(
        self,
        pools: DirectPools,
        candidates: list[Any],
        message: BulkMessage,
        replay: _Replay,
        part: _Attempt,
    ) -> None:
        skipped = []
        for number, candidate in enumerate(candidates, 1):
            before = (dict(part.final), dict(part.retry))
            pool = pools.pool(candidate.address, candidate.host)
            await self._relayed(pool, message, replay, part)
            # RFC 5321 §5: while no recipient has a definitive answer (no
            # session, a lost one, or only 4xx replies), the next host may
            # take the message.
            if part.final:
                return
            reasons = {e or str(r or "no reply") for r, e in part.retry.values()}
            why = "; ".join(sorted(reasons))
            part.final, part.retry = before
            where = f"{candidate.host} [{candidate.address}]"
            skipped.append(f"{where}: {why}")
            more = "the next host" if number < len(candidates) else "no more hosts"
            log.warning("%s: %s; %s", where, why, more)
        part.all_pending(None, "no mail exchanger answered: " + ", ".join(skipped))

    async def _relayed(
        self, pool: Pool, message: BulkMessage, replay: _Replay, attempt: _Attempt
    ) -> None:
        from .routing import _Skip

        member: _Member | None = None
        settled = set(attempt.final)
        try:
            member = await pool._acquire()
            try:
                with replay.open() as content:
                    result = await member.client.deliver(
                        message.reverse_path,
                        attempt.pending,
                        content,
                        message.mail_options,
                        message.rcpt_options,
                    )
            except SMTPException:
                raise
            except Exception as exc:
                # The message itself is at fault (its file, its content,
                # its addresses): another attempt would fail the same way.
                attempt.refuse_all(None, f"{type(exc).__name__}: {exc}")
                return
            finally:
                await pool._release(member)
        except _Skip as skip:
            # The host cannot give the TLS the policy requires, or closed the
            # session at STARTTLS: never final, whatever the reply.
            reply = skip.reply
            transient = reply if reply is not None and reply.is_transient else None
            attempt.all_pending(transient, skip.reason)
        except SMTPServerDisconnected as exc:
            partial = getattr(exc, "result", None)
            lost = partial if isinstance(partial, TransactionResult) else None
            attempt.lost(lost, str(exc) or type(exc).__name__)
        except (SMTPSenderRefused, SMTPNotSupportedError) as exc:
            # Raised before MAIL: the message cannot go to this server.
            reply = exc.reply if isinstance(exc, SMTPResponseException) else None
            attempt.refuse_all(reply, str(exc))
        except (SMTPException, OSError) as exc:
            # The session could not be opened: EHLO, TLS, AUTH or connect.
            reply = exc.reply if isinstance(exc, SMTPResponseException) else None
            attempt.all_pending(
                reply if reply is not None and reply.is_transient else None,
                f"{type(exc).__name__}: {exc}",
            )
        else:
            attempt.read(result)
        finally:
            if member is not None:
                # Whether the session that settled them was TLS.
                for address, outcome in attempt.final.items():
                    if address not in settled:
                        outcome.tls = member.tls
                        outcome.tls_fallback = member.tls_fallback

    async def _wait_before_retry(
        self, message: BulkMessage, attempts: int, attempt: _Attempt
    ) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempts - 1))
        log.warning(
            "message %s: %d recipients deferred, attempt %d in %.1f s",
            message.id,
            len(attempt.retry),
            attempts + 1,
            delay,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()


def _log_result(result: MessageResult) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(
            "message %s: %d delivered, %d refused, %d deferred, %d attempts",
            result.id,
            len(result.delivered),
            len(result.refused),
            len(result.deferred),
            result.attempts,
        )


@dataclass(slots=True)
class _End:
    error: BaseException | None


class _Window:
    """What :meth:`BulkSender.send` and its feeder share: the results not
    yet handed back, and the room left for messages read ahead of theirs.
    One task waits on each side."""

    __slots__ = ("room", "results", "_getter", "_feeder")

    def __init__(self, room: int) -> None:
        self.room = room
        self.results: collections.deque[MessageResult | _End] = collections.deque()
        self._getter: asyncio.Future[None] | None = None
        self._feeder: asyncio.Future[None] | None = None

    def put(self, item: MessageResult | _End) -> None:
        self.results.append(item)
        _wake(self._getter)

    async def get(self) -> MessageResult | _End:
        while not self.results:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return self.results.popleft()

    def release(self, room: int) -> None:
        self.room += room
        _wake(self._feeder)

    async def acquire(self) -> None:
        while self.room <= 0:
            self._feeder = asyncio.get_running_loop().create_future()
            try:
                await self._feeder
            finally:
                self._feeder = None
        self.room -= 1


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _as_message(item: Any) -> BulkMessage:
    if isinstance(item, BulkMessage):
        return item
    if isinstance(item, tuple) and 3 <= len(item) <= 4:
        reverse_path, forward_paths, content, *rest = item
        if isinstance(forward_paths, str):
            forward_paths = [forward_paths]
        return BulkMessage(reverse_path, forward_paths, content, *rest)
    raise TypeError(
        "each message must be a BulkMessage or a tuple (reverse_path, "
        f"forward_paths, content[, id]), not {type(item).__name__}"
    )


# --- for programs that are not async ----------------------------------------------


class BackgroundSender:
    """A :class:`BulkSender` on an event loop in its own thread.

    :meth:`submit` returns at once with a ``concurrent.futures.Future`` of
    the :class:`MessageResult`; it blocks only when ``2 * size`` messages
    are already waiting, so memory stays bounded. Use it as a context
    manager, or call :meth:`close`.

    Args:
        host, port: the server.
        max_attempts, backoff, max_backoff, batch_size: as for
            :class:`BulkSender`; messages submitted at once share batches.
        pool_options: as for :class:`Pool` (``size``, ``use_tls``, ``user``...).
    """

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **pool_options: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="smtpc-sender", daemon=True
        )
        self._thread.start()

        async def setup() -> BulkSender:
            pool = Pool(host, port, **pool_options)
            return BulkSender(
                pool,
                max_attempts=max_attempts,
                backoff=backoff,
                max_backoff=max_backoff,
                batch_size=batch_size,
            )

        try:
            self._sender = self._call(setup())
        except BaseException:
            self._stop_loop()
            raise
        self._window = threading.BoundedSemaphore(2 * self._sender.pool.size)
        self._closed = False

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> BackgroundSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        reverse_path: str,
        forward_paths: str | Sequence[str],
        content: Any,
        id: str | None = None,
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> concurrent.futures.Future[MessageResult]:
        """Queue one message; the future gives its result.

        Raises:
            RuntimeError: the sender is closed.
        """
        if self._closed:
            raise RuntimeError("the sender is closed")
        if isinstance(forward_paths, str):
            forward_paths = [forward_paths]
        message = BulkMessage(
            reverse_path, forward_paths, content, id, mail_options, rcpt_options
        )
        self._window.acquire()
        future = asyncio.run_coroutine_threadsafe(
            self._sender.send_one(message), self._loop
        )
        future.add_done_callback(lambda _: self._window.release())
        return future

    def close(self, *, wait: bool = True) -> None:
        """Stop taking messages; with ``wait``, finish those submitted,
        otherwise abandon them (their futures still get results)."""
        if self._closed:
            return
        self._closed = True
        if not wait:
            self._loop.call_soon_threadsafe(lambda: self._sender.stop(now=True))
        for _ in range(2 * self._sender.pool.size):
            self._window.acquire()
        try:
            self._call(self._sender.pool.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
