"""Many messages over a few reused sessions: a pool and a bulk sender.

:class:`Pool` keeps up to ``size`` sessions to one server open and lends
them out, one task at a time. :class:`BulkSender` sends a stream of
messages over the pool, retries temporary failures with exponential
back-off, and gives one :class:`MessageResult` per message, with every
recipient's outcome. :class:`BackgroundSender` runs a bulk sender in its own
thread for programs that are not async.

The blocking client (:class:`smtpc.SMTP`) is one session per thread: to
send from several threads without asyncio, give each thread its own client,
or submit to a :class:`BackgroundSender`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
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


# --- the pool -----------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Member:
    client: SMTP
    messages: int = 0
    idle_since: float = field(default_factory=time.monotonic)


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
            code, text = await client.connect()
            if code != ReplyCode.SERVICE_READY:
                raise SMTPConnectError(code, text)
            await client.ehlo_or_helo_if_needed()
            if self._starttls:
                await client.starttls(context=self._tls_context)
                await client.ehlo_or_helo_if_needed()
            if self._credentials is not None:
                await client.login(*self._credentials)
        except BaseException:
            self._drop(member, "could not be set up")
            raise
        log.debug("session opened to %s:%s", self.host, self.port)
        return member

    async def _release(self, member: _Member) -> None:
        try:
            member.messages += 1
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
        """QUIT every idle session; sessions lent out end when returned."""
        self._closed = True
        idle, self._idle = self._idle, []
        for member in idle:
            with contextlib.suppress(SMTPException, OSError):
                await member.client.quit()
            self._drop(member, "ended with QUIT")


class DirectPools:
    """Sessions straight to each recipient domain's mail exchangers (RFC 5321
    §5): a :class:`Pool` per host, made on first use, hosts tried in the
    order :class:`~smtpc.routing.MXResolver` gives. A :class:`BulkSender`
    given one delivers directly instead of through one relay.

    Args:
        resolver: the MX resolver (its nameserver, port and timeout).
        port: the mail exchangers' SMTP port.
        size: sessions at once to each host.
        pool_options: what else each :class:`Pool` takes.
    """

    def __init__(
        self, resolver: Any, *, port: int = 25, size: int = 2, **pool_options: Any
    ) -> None:
        self.resolver = resolver
        self.port = port
        self.size = size
        self._options = pool_options
        self._pools: dict[str, Pool] = {}
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

    def pool(self, address: str) -> Pool:
        """The pool of sessions to one mail exchanger's address."""
        if address not in self._pools:
            self._pools[address] = Pool(
                address, self.port, size=self.size, **self._options
            )
        return self._pools[address]

    async def close(self) -> None:
        """QUIT the idle sessions of every host."""
        for pool in self._pools.values():
            await pool.close()


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
    """

    address: str
    outcome: Outcome
    reply: Reply | None = None
    error: str | None = None


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


class BulkSender:
    """Sends a stream of messages over a :class:`Pool`, with retries.

    A temporary failure (a 4xx reply at any stage, a lost session, a
    session that could not be opened) is tried again after
    ``backoff * 2**(attempt - 1)`` seconds (at most ``max_backoff``), up to
    ``max_attempts`` attempts; a 5xx reply is final. A retry carries only
    the recipients still pending: one whose final reply was 250 is never
    sent the message again.

    At most ``2 * pool.size`` messages are read from the input and not yet
    handed back as results, so memory stays bounded however many there are.

    Args:
        pool: where the sessions come from; its ``size`` sets how many
            messages are sent at once.
        max_attempts: attempts per message, the first one included.
        backoff: seconds before the first retry.
        max_backoff: longest wait between two attempts.
    """

    def __init__(
        self,
        pool: Pool | DirectPools,
        *,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.pool = pool
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._stop = asyncio.Event()
        self._abort = asyncio.Event()

    def stop(self, *, now: bool = False) -> None:
        """Read no more messages and start no more attempts.

        Transactions under way finish, unless ``now``: then they are
        abandoned (their sessions closed). Either way every message already
        read gets its result, its pending recipients deferred.
        """
        self._stop.set()
        if now:
            self._abort.set()

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
        results: asyncio.Queue[MessageResult | _End] = asyncio.Queue()
        window = asyncio.Semaphore(2 * self.pool.size)
        # With DirectPools, size is per host: the window still bounds memory.
        feeder = asyncio.create_task(self._feed(messages, window, results))
        try:
            while True:
                item = await results.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                window.release()
                yield item
        finally:
            if not feeder.done():
                self.stop(now=True)
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder

    async def _feed(
        self,
        messages: Any,
        window: asyncio.Semaphore,
        results: asyncio.Queue[MessageResult | _End],
    ) -> None:
        tasks: set[asyncio.Task[None]] = set()
        error: BaseException | None = None

        async def run(message: BulkMessage) -> None:
            try:
                result = await self.send_one(message)
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
            results.put_nowait(result)

        try:
            async for item in _items(messages):
                message = _as_message(item)
                await window.acquire()
                if self.stopping:
                    window.release()
                    break
                task = asyncio.create_task(run(message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except Exception as exc:
            error = exc
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            results.put_nowait(_End(error))

    async def send_one(self, message: BulkMessage) -> MessageResult:
        """Send one message, with retries; never raises for a refusal or a
        lost session: the result tells."""
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
        if log.isEnabledFor(logging.INFO):
            log.info(
                "message %s: %d delivered, %d refused, %d deferred, %d attempts",
                message.id,
                len(result.delivered),
                len(result.refused),
                len(result.deferred),
                attempts,
            )
        return result

    async def _attempt(
        self, message: BulkMessage, replay: _Replay, attempt: _Attempt
    ) -> None:
        task = asyncio.create_task(self._transaction(message, replay, attempt))
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

    async def _transaction(
        self, message: BulkMessage, replay: _Replay, attempt: _Attempt
    ) -> None:
        if isinstance(self.pool, DirectPools):
            await self._direct(self.pool, message, replay, attempt)
            return
        await self._relayed(self.pool, message, replay, attempt)

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
        for candidate in candidates:
            before = (dict(part.final), dict(part.retry))
            await self._relayed(pools.pool(candidate.address), message, replay, part)
            # RFC 5321 §5: while no recipient has a definitive answer (no
            # session, a lost one, or only 4xx replies), the next host may
            # take the message.
            if part.final:
                return
            part.final, part.retry = before
            skipped.append(f"{candidate.host} [{candidate.address}]")
            log.warning("no session with %s: trying the next host", candidate.host)
        part.all_pending(None, "no mail exchanger answered: " + ", ".join(skipped))

    async def _relayed(
        self, pool: Pool, message: BulkMessage, replay: _Replay, attempt: _Attempt
    ) -> None:
        try:
            async with pool.session() as client:
                try:
                    with replay.open() as content:
                        result = await client.deliver(
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
        except SMTPServerDisconnected as exc:
            # Whatever was settled before the session was lost (LMTP
            # replies) stands; the rest is tried again.
            partial = getattr(exc, "result", None)
            if isinstance(partial, TransactionResult):
                for r in partial.recipients:
                    if r.final is not None and r.accepted:
                        attempt.settle(r.address, Outcome.DELIVERED, r.final)
            attempt.all_pending(None, str(exc) or type(exc).__name__)
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


@dataclass(slots=True)
class _End:
    error: BaseException | None


async def _items(messages: Any) -> AsyncIterator[Any]:
    if isinstance(messages, AsyncIterable):
        async for item in messages:
            yield item
    else:
        for item in messages:
            yield item


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
        max_attempts, backoff, max_backoff: as for :class:`BulkSender`.
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
