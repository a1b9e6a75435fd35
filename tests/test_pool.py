"""Pool and bulk sender against aiosmtpd servers on loopback that refuse,
defer then accept, or drop the session in the middle of a transaction.

Every test checks both sides: each recipient appears in the results exactly
once, and the server received each accepted message exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import io
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from servers import RecordingHandler, SMTPServer, TLSRecordingHandler, TurnCounter
from test_routing import (
    MX_CERT_NAMES,
    STARTTLS_EHLO,
    DNSServer,
    Hosts,
    _broken_tls_context,
    _port_free_everywhere,
)

import smtpc
from smtpc.pool import (
    BulkMessage,
    BulkSender,
    DirectPools,
    MessageResult,
    Outcome,
    Pool,
)

SENDER = "sender@example.com"


def content(message_id: str, size: int = 1) -> bytes:
    body = b"line of text\r\n" * size
    return f"Message-ID: <{message_id}>\r\nSubject: bulk\r\n\r\n".encode() + body


@dataclass
class FlakyHandler(RecordingHandler):
    """RecordingHandler that also defers and drops on demand.

    ``defer_rcpt``: address substring -> how many 451 replies before 250.
    ``defer_data``: message ids whose content gets one 451 first.
    ``drop_data``: message ids whose first content is answered by closing
    the connection without a reply.
    ``refuse_data``: message ids whose content gets 554.
    ``pipelining``: offer PIPELINING (aiosmtpd does not by default).
    """

    defer_rcpt: dict[str, int] = field(default_factory=dict)
    defer_data: set[str] = field(default_factory=set)
    drop_data: set[str] = field(default_factory=set)
    refuse_data: set[str] = field(default_factory=set)
    pipelining: bool = False
    sessions: int = 0
    noops: int = 0
    active: int = 0
    most_active: int = 0
    _deferred: collections.Counter[str] = field(default_factory=collections.Counter)

    async def handle_EHLO(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.sessions += 1
        lines = await super().handle_EHLO(
            server, session, envelope, hostname, responses
        )
        if self.pipelining:
            lines = [*lines[:-1], "250-PIPELINING", lines[-1]]
        return lines

    async def handle_NOOP(
        self, server: Any, session: Any, envelope: Any, arg: str
    ) -> str:
        self.noops += 1
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        for key, times in self.defer_rcpt.items():
            if key in address and self._deferred[address] < times:
                self._deferred[address] += 1
                return "451 4.2.0 Mailbox busy, try later"
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message_id = _message_id(envelope.original_content)
        if message_id in self.drop_data:
            self.drop_data.discard(message_id)
            server.transport.abort()
            return "250 never sent"
        if message_id in self.defer_data:
            self.defer_data.discard(message_id)
            return "451 4.3.0 Try the message content again"
        if message_id in self.refuse_data:
            return "554 5.6.0 Message content refused"
        return await super().handle_DATA(server, session, envelope)

    def delivered(self) -> collections.Counter[tuple[str, str]]:
        """(message id, forward-path) -> times the server accepted it."""
        return collections.Counter(
            (_message_id(e.original_content), rcpt)
            for e in self.envelopes
            for rcpt in e.rcpt_tos
        )


def _message_id(data: bytes) -> str:
    match = re.search(rb"Message-ID: <([^>]+)>", data)
    assert match is not None
    return match[1].decode()


@pytest.fixture
def flaky(smtp_server: Callable[..., SMTPServer]) -> Callable[..., SMTPServer]:
    def start(**options: Any) -> SMTPServer:
        return smtp_server(handler=FlakyHandler(**options))

    return start


async def collect(
    server: SMTPServer,
    messages: Any,
    *,
    size: int = 3,
    max_attempts: int = 3,
    batch_size: int | None = None,
    **pool_options: Any,
) -> list[MessageResult]:
    async with Pool(
        server.host, server.port, size=size, timeout=5, **pool_options
    ) as pool:
        options = {} if batch_size is None else {"batch_size": batch_size}
        sender = BulkSender(pool, max_attempts=max_attempts, backoff=0.01, **options)
        return [result async for result in sender.send(messages)]


def outcomes(results: list[MessageResult]) -> dict[tuple[str, str], Outcome]:
    seen: dict[tuple[str, str], Outcome] = {}
    for result in results:
        for r in result.recipients:
            key = (str(result.id), r.address)
            assert key not in seen, f"{key} reported twice"
            seen[key] = r.outcome
    return seen


def test_every_recipient_once_and_each_accepted_message_once(flaky: Any) -> None:
    server = flaky(
        defer_rcpt={"flaky": 2},
        defer_data={"m3"},
        drop_data={"m5", "m8"},
    )
    to = ["ok@example.org", "refuse@example.org", "flaky@example.org"]
    messages = [
        BulkMessage(SENDER, to + ["defer@example.net"], content(f"m{i}"), f"m{i}")
        for i in range(12)
    ]
    results = asyncio.run(collect(server, messages, max_attempts=4))

    seen = outcomes(results)
    assert len(results) == 12
    assert len(seen) == 12 * 4
    for i in range(12):
        assert seen[(f"m{i}", "ok@example.org")] is Outcome.DELIVERED
        assert seen[(f"m{i}", "flaky@example.org")] is Outcome.DELIVERED
        assert seen[(f"m{i}", "refuse@example.org")] is Outcome.REFUSED
        assert seen[(f"m{i}", "defer@example.net")] is Outcome.DEFERRED
    delivered = server.handler.delivered()
    assert set(delivered.values()) == {1}
    assert set(delivered) == {
        (f"m{i}", a) for i in range(12) for a in ("ok@example.org", "flaky@example.org")
    }


def test_replies_and_attempts(flaky: Any) -> None:
    server = flaky()
    to = ["ok@example.org", "refuse@example.org", "defer@example.net"]
    [result] = asyncio.run(collect(server, [(SENDER, to, content("r1"), "r1")]))
    ok, refused, deferred = result.recipients
    assert (ok.outcome, ok.reply.code) == (Outcome.DELIVERED, 250)
    assert (refused.outcome, refused.reply.code) == (Outcome.REFUSED, 550)
    assert refused.reply.enhanced == "5.1.1"
    assert (deferred.outcome, deferred.reply.code) == (Outcome.DEFERRED, 451)
    assert deferred.reply.enhanced == "4.3.0"
    assert result.attempts == 3


def test_retry_carries_only_pending_recipients(flaky: Any) -> None:
    server = flaky(defer_rcpt={"flaky": 1})
    to = ["ok@example.org", "flaky@example.org"]
    [result] = asyncio.run(collect(server, [(SENDER, to, content("p1"), "p1")]))
    assert result.delivered == to
    assert result.attempts == 2
    assert [e.rcpt_tos for e in server.envelopes] == [
        ["ok@example.org"],
        ["flaky@example.org"],
    ]


def test_file_content_is_rewound_for_a_retry(flaky: Any, tmp_path: Any) -> None:
    server = flaky(defer_data={"f1", "f2"})
    data = content("f1", size=5000)
    path = tmp_path / "f2.eml"
    path.write_bytes(content("f2", size=10))
    messages = [
        (SENDER, "a@example.org", io.BytesIO(data), "f1"),
        (SENDER, "b@example.org", path, "f2"),
    ]
    results = asyncio.run(collect(server, messages))
    assert sorted(r.delivered[0] for r in results) == ["a@example.org", "b@example.org"]
    stored = {_message_id(e.original_content): e for e in server.envelopes}
    assert stored["f1"].original_content == data
    assert stored["f2"].original_content == path.read_bytes()


def test_one_shot_content_is_deferred_not_resent(flaky: Any) -> None:
    server = flaky(defer_data={"once"})
    chunks = iter([content("once")])
    [result] = asyncio.run(collect(server, [(SENDER, "a@example.org", chunks, "once")]))
    [recipient] = result.recipients
    assert recipient.outcome is Outcome.DEFERRED
    assert recipient.reply is not None and recipient.reply.code == 451
    assert "cannot be read again" in (recipient.error or "")
    assert server.envelopes == []


def test_refused_sender_and_bad_address_are_final(flaky: Any) -> None:
    server = flaky()
    messages = [
        ("refuse@example.com", ["a@example.org"], content("s1"), "s1"),
        (SENDER, ["bad\r\naddress@example.org"], content("s2"), "s2"),
    ]
    results = {r.id: r for r in asyncio.run(collect(server, messages))}
    assert results["s1"].recipients[0].reply.code == 552
    assert results["s1"].attempts == 1
    assert results["s2"].refused == ["bad\r\naddress@example.org"]
    assert "ValueError" in (results["s2"].recipients[0].error or "")
    assert server.envelopes == []


def test_a_broken_source_is_final_and_the_others_still_go(
    flaky: Any, tmp_path: Any
) -> None:
    server = flaky()

    def broken() -> Any:
        yield b"Subject: x\r\n\r\nfirst\r\n"
        raise RuntimeError("the source broke")

    messages = [
        (SENDER, ["a@example.org"], broken(), "broken"),
        (SENDER, ["b@example.org"], tmp_path / "missing.eml", "missing"),
        (SENDER, ["c@example.org"], content("fine"), "fine"),
    ]
    results = {
        r.id: r for r in asyncio.run(asyncio.wait_for(collect(server, messages), 20))
    }
    assert results["broken"].refused == ["a@example.org"]
    assert "RuntimeError" in (results["broken"].recipients[0].error or "")
    assert results["missing"].refused == ["b@example.org"]
    assert results["missing"].attempts == 1
    assert results["fine"].delivered == ["c@example.org"]
    assert [e.rcpt_tos for e in server.envelopes] == [["c@example.org"]]


def test_pool_bounds_and_reuses_sessions(flaky: Any) -> None:
    server = flaky()
    messages = [
        (SENDER, f"r{i}@example.org", content(f"b{i}"), f"b{i}") for i in range(30)
    ]
    results = asyncio.run(collect(server, messages, size=3))
    assert all(r.delivered for r in results)
    assert 1 <= server.handler.sessions <= 3
    assert len(server.envelopes) == 30


def test_pool_ends_a_session_after_max_messages(flaky: Any) -> None:
    server = flaky()
    messages = [
        (SENDER, f"r{i}@example.org", content(f"x{i}"), f"x{i}") for i in range(10)
    ]
    results = asyncio.run(collect(server, messages, size=1, max_messages=4))
    assert all(r.delivered for r in results)
    assert server.handler.sessions == 3


def test_pool_checks_idle_sessions_with_noop(flaky: Any) -> None:
    server = flaky()

    async def main() -> tuple[int, int]:
        async with Pool(server.host, server.port, size=1, idle_check=0.0) as pool:
            for i in range(3):
                async with pool.session() as client:
                    await client.sendmail(SENDER, "a@example.org", content(f"n{i}"))
                await asyncio.sleep(0.01)
            return pool.open_sessions, server.handler.noops

    assert asyncio.run(main()) == (1, 2)
    assert server.handler.sessions == 1


def test_pool_reopens_after_the_server_closes(flaky: Any) -> None:
    server = flaky(drop_data={"d0"})

    async def main() -> list[Any]:
        async with Pool(server.host, server.port, size=1) as pool:
            replies = []
            for i in range(2):
                async with pool.session() as client:
                    try:
                        result = await client.deliver(
                            SENDER, "a@example.org", content(f"d{i}")
                        )
                        replies.append(result.final.code)
                    except smtpc.SMTPServerDisconnected:
                        replies.append("lost")
            return replies

    assert asyncio.run(main()) == ["lost", 250]
    assert server.handler.sessions == 2


def test_pool_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        Pool("127.0.0.1", size=0)
    with pytest.raises(ValueError):
        Pool("127.0.0.1", use_tls=True, starttls=True)
    with pytest.raises(ValueError):
        Pool("127.0.0.1", user="u")


def test_pool_with_starttls_and_auth(
    smtp_server: Callable[..., SMTPServer], client_tls_context: Any
) -> None:
    server = smtp_server(auth=True, starttls=True)
    from servers import AUTH_PASSWORD, AUTH_USER

    async def main() -> list[MessageResult]:
        pool = Pool(
            server.host,
            server.port,
            size=2,
            starttls=True,
            tls_context=client_tls_context,
            user=AUTH_USER,
            password=AUTH_PASSWORD,
        )
        async with pool:
            sender = BulkSender(pool)
            items = [
                (SENDER, "a@example.org", content(f"t{i}"), f"t{i}") for i in range(4)
            ]
            return [r async for r in sender.send(items)]

    results = asyncio.run(main())
    assert all(r.delivered == ["a@example.org"] for r in results)
    assert 1 <= len(server.handler.logins) <= 2


def test_unreachable_server_defers_every_recipient() -> None:

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = SMTPServer("127.0.0.1", port, FlakyHandler(), None)  # type: ignore[arg-type]
    results = asyncio.run(collect(server, [(SENDER, "a@example.org", b"x", "u1")]))
    [recipient] = results[0].recipients
    assert recipient.outcome is Outcome.DEFERRED
    assert "ConnectionRefusedError" in (recipient.error or "")
    assert results[0].attempts == 3


def test_reads_at_most_twice_the_pool_size_ahead(flaky: Any) -> None:
    server = flaky()
    read = 0

    def messages() -> Iterator[tuple[Any, ...]]:
        nonlocal read
        for i in range(40):
            read += 1
            yield (SENDER, f"r{i}@example.org", content(f"w{i}"), f"w{i}")

    async def main() -> int:
        ahead = 0
        taken = 0
        async with Pool(server.host, server.port, size=2) as pool:
            async for _ in BulkSender(pool).send(messages()):
                taken += 1
                ahead = max(ahead, read - taken)
                await asyncio.sleep(0.005)  # a slow consumer
        return ahead

    ahead = asyncio.run(main())
    assert ahead <= 2 * 2 + 1
    assert len(server.envelopes) == 40


def test_async_iterable_input(flaky: Any) -> None:
    server = flaky()

    async def messages() -> AsyncIterator[BulkMessage]:
        for i in range(5):
            await asyncio.sleep(0)
            yield BulkMessage(SENDER, [f"r{i}@example.org"], content(f"a{i}"), f"a{i}")

    results = asyncio.run(collect(server, messages()))
    assert sorted(r.id for r in results) == [f"a{i}" for i in range(5)]


def test_bad_item_raises_after_earlier_results(flaky: Any) -> None:
    server = flaky()
    items: list[Any] = [(SENDER, "a@example.org", content("g1"), "g1"), "not a message"]

    async def main() -> list[MessageResult]:
        got: list[MessageResult] = []
        async with Pool(server.host, server.port) as pool:
            with pytest.raises(TypeError):
                async for result in BulkSender(pool).send(items):
                    got.append(result)
        return got

    assert [r.id for r in asyncio.run(main())] == ["g1"]


def test_stop_gives_a_result_for_every_message_read(flaky: Any) -> None:
    server = flaky(defer_rcpt={"slow": 100})

    async def main() -> tuple[list[MessageResult], int]:
        read = 0

        def messages() -> Iterator[tuple[Any, ...]]:
            nonlocal read
            for i in range(100):
                read += 1
                to = ["slow@example.org", f"r{i}@example.org"]
                yield (SENDER, to, content(f"s{i}"), f"s{i}")

        got = []
        async with Pool(server.host, server.port, size=2) as pool:
            sender = BulkSender(pool, max_attempts=50, backoff=0.05)
            asyncio.get_running_loop().call_later(0.3, sender.stop)
            async for result in sender.send(messages()):
                got.append(result)
        return got, read

    results, read = asyncio.run(main())
    assert len(results) < 100
    seen = outcomes(results)
    for result in results:
        assert (
            seen[(str(result.id), f"r{result.id[1:]}@example.org")] is Outcome.DELIVERED
        )
        slow = result.recipients[0]
        assert slow.outcome is Outcome.DEFERRED
        assert slow.reply is not None and slow.reply.code == 451
    delivered = server.handler.delivered()
    assert set(delivered.values()) == {1}
    assert {k for k, v in seen.items() if v is Outcome.DELIVERED} == set(delivered)


def test_background_sender_from_threads(flaky: Any) -> None:
    server = flaky(defer_rcpt={"flaky": 1})
    futures: list[concurrent.futures.Future[MessageResult]] = []
    lock = threading.Lock()

    with smtpc.BackgroundSender(server.host, server.port, size=2, backoff=0.01) as bg:

        def work(t: int) -> None:
            for i in range(5):
                to = [f"t{t}@example.org", "flaky@example.org"]
                future = bg.submit(SENDER, to, content(f"bg{t}-{i}"), f"bg{t}-{i}")
                with lock:
                    futures.append(future)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results = [f.result(10) for f in futures]

    assert len(results) == 15
    assert all(len(r.delivered) == 2 for r in results)
    assert set(server.handler.delivered().values()) == {1}
    with pytest.raises(RuntimeError):
        bg.submit(SENDER, "a@example.org", b"x")


@dataclass
class StallingHandler(FlakyHandler):
    """Takes 5 seconds to answer the message content."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(5)
        return await super().handle_DATA(server, session, envelope)


def test_stop_now_abandons_transactions_under_way(
    smtp_server: Callable[..., SMTPServer],
) -> None:
    server = smtp_server(handler=StallingHandler())
    messages = [
        (SENDER, f"r{i}@example.org", content(f"z{i}"), f"z{i}") for i in range(6)
    ]

    async def main() -> tuple[list[MessageResult], float]:
        started = asyncio.get_running_loop().time()
        async with Pool(server.host, server.port, size=2, timeout=10) as pool:
            sender = BulkSender(pool)
            asyncio.get_running_loop().call_later(0.3, lambda: sender.stop(now=True))
            got = [r async for r in sender.send(messages)]
        return got, asyncio.get_running_loop().time() - started

    results, elapsed = asyncio.run(main())
    assert elapsed < 3
    assert 2 <= len(results) <= 4
    for result in results:
        [recipient] = result.recipients
        assert recipient.outcome is Outcome.DEFERRED
        assert recipient.error in ("stopped during the transaction", "stopped")


# --- pipelined batches ----------------------------------------------------------


class TurnRelay(TurnCounter):
    """A round-trip counter in front of a recording server."""

    def __init__(self, server: SMTPServer) -> None:
        super().__init__((server.host, server.port))
        self.handler = server.handler


@pytest.fixture
def relay() -> Iterator[Callable[[SMTPServer], TurnRelay]]:
    started: list[TurnRelay] = []

    def start(server: SMTPServer) -> TurnRelay:
        started.append(TurnRelay(server))
        return started[-1]

    yield start
    for r in started:
        r.close()


def _turns(relay: TurnRelay, count: int, **options: Any) -> list[MessageResult]:
    messages = [
        (SENDER, f"r{i}@example.org", content(f"t{i}"), f"t{i}") for i in range(count)
    ]
    return asyncio.run(collect(relay, messages, size=1, **options))  # type: ignore[arg-type]


def test_batches_take_one_round_trip_a_message(flaky: Any, relay: Any) -> None:
    # One session: with batches, each message's end of content goes with the
    # next message's commands; one at a time, each message waits twice.
    batched = relay(flaky(pipelining=True))
    results = _turns(batched, 40)
    assert all(r.delivered for r in results)
    single = relay(flaky(pipelining=True))
    results = _turns(single, 40, batch_size=1)
    assert all(r.delivered for r in results)
    # Greeting, EHLO and QUIT add a few round trips to each.
    assert batched.sessions == single.sessions == 1
    assert 40 <= batched.turns <= 40 * 1.15 + 4
    assert single.turns >= 80
    assert len(batched.handler.envelopes) == len(single.handler.envelopes) == 40


def test_batches_need_pipelining(flaky: Any, relay: Any) -> None:
    # Without PIPELINING a batch saves nothing: every command waits.
    plain = relay(flaky())
    results = _turns(plain, 20)
    assert all(r.delivered for r in results)
    assert plain.turns >= 4 * 20


def test_a_batch_respects_max_messages(flaky: Any, relay: Any) -> None:
    counted = relay(flaky(pipelining=True))
    results = _turns(counted, 25, max_messages=10, batch_size=4)
    assert all(r.delivered for r in results)
    assert counted.sessions == counted.handler.sessions == 3


def _ids(count: int) -> list[str]:
    return [f"b{i}" for i in range(count)]


def _batch_of(count: int, to: str = "ok@example.org") -> list[BulkMessage]:
    return [BulkMessage(SENDER, [to], content(i), i) for i in _ids(count)]


def test_refused_content_in_a_batch_hits_that_message_only(flaky: Any) -> None:
    server = flaky(pipelining=True, refuse_data={"b4"})
    results = asyncio.run(collect(server, _batch_of(12), size=1))
    by_id = {r.id: r for r in results}
    assert by_id["b4"].refused == ["ok@example.org"]
    assert by_id["b4"].recipients[0].reply.code == 554
    assert by_id["b4"].attempts == 1
    for i in _ids(12):
        if i != "b4":
            assert by_id[i].delivered == ["ok@example.org"] and by_id[i].attempts == 1
    assert server.handler.sessions == 1
    assert set(server.handler.delivered().values()) == {1}
    assert len(server.envelopes) == 11


def test_deferred_content_in_a_batch_is_retried_alone(flaky: Any) -> None:
    server = flaky(pipelining=True, defer_data={"b3", "b7"})
    results = asyncio.run(collect(server, _batch_of(12), size=2))
    by_id = {r.id: r for r in results}
    assert {i for i, r in by_id.items() if r.attempts == 2} == {"b3", "b7"}
    assert all(r.delivered == ["ok@example.org"] for r in results)
    assert len(outcomes(results)) == 12
    delivered = server.handler.delivered()
    assert set(delivered.values()) == {1}
    assert set(delivered) == {(i, "ok@example.org") for i in _ids(12)}


def test_a_lost_session_in_a_batch_loses_nothing(flaky: Any) -> None:
    # The server drops the connection at b5's end of content. b5 has no
    # final reply, and the next message's commands, sent with that end,
    # no reply at all: both are sent again in a new session, and every
    # other message is not.
    server = flaky(pipelining=True, drop_data={"b5"})
    results = asyncio.run(collect(server, _batch_of(12), size=1))
    by_id = {r.id: r for r in results}
    assert len(results) == 12
    assert all(r.delivered == ["ok@example.org"] for r in results)
    again = {i for i, r in by_id.items() if r.attempts == 2}
    assert "b5" in again and again <= {"b5", "b6"}
    assert all(r.attempts == 1 for i, r in by_id.items() if i not in again)
    assert server.handler.sessions == 2
    delivered = server.handler.delivered()
    assert set(delivered.values()) == {1}
    assert set(delivered) == {(i, "ok@example.org") for i in _ids(12)}


def test_a_lost_session_with_no_retry_left_is_deferred(flaky: Any) -> None:
    server = flaky(pipelining=True, drop_data={"b2"})
    results = asyncio.run(collect(server, _batch_of(6), size=1, max_attempts=1))
    by_id = {r.id: r for r in results}
    assert by_id["b2"].deferred == ["ok@example.org"]
    assert "closed" in (by_id["b2"].recipients[0].error or "")
    hit = {i for i, r in by_id.items() if r.deferred}
    assert "b2" in hit and hit <= {"b2", "b3"}
    stored = {_message_id(e.original_content) for e in server.envelopes}
    assert stored == set(_ids(6)) - hit


def test_bad_messages_in_a_batch_fail_alone(flaky: Any, tmp_path: Any) -> None:
    server = flaky(pipelining=True)
    messages = _batch_of(6)
    messages[1] = BulkMessage(SENDER, ["bad\r\nx@example.org"], content("b1"), "b1")
    messages[3] = BulkMessage(SENDER, ["c@example.org"], tmp_path / "gone.eml", "b3")
    results = asyncio.run(collect(server, messages, size=1))
    by_id = {r.id: r for r in results}
    assert "ValueError" in (by_id["b1"].recipients[0].error or "")
    assert "FileNotFoundError" in (by_id["b3"].recipients[0].error or "")
    assert by_id["b1"].attempts == by_id["b3"].attempts == 1
    assert {i for i, r in by_id.items() if r.delivered} == {"b0", "b2", "b4", "b5"}
    assert server.handler.sessions == 1


def test_a_broken_source_in_a_batch_ends_its_session_only(flaky: Any) -> None:
    server = flaky(pipelining=True)

    def broken() -> Iterator[bytes]:
        yield b"Message-ID: <b2>\r\nSubject: x\r\n\r\nfirst\r\n"
        raise RuntimeError("the source broke")

    messages = _batch_of(6)
    messages[2] = BulkMessage(SENDER, ["ok@example.org"], broken(), "b2")
    results = asyncio.run(collect(server, messages, size=1))
    by_id = {r.id: r for r in results}
    assert by_id["b2"].refused == ["ok@example.org"]
    assert "RuntimeError" in (by_id["b2"].recipients[0].error or "")
    assert {i for i, r in by_id.items() if r.delivered} == set(_ids(6)) - {"b2"}
    assert all(r.attempts == 1 for r in results)
    # SMTP cannot abandon content: that session is closed, a new one opened.
    assert server.handler.sessions == 2
    assert set(server.handler.delivered().values()) == {1}


def test_envelope_parameters_go_one_at_a_time(flaky: Any) -> None:
    server = flaky(pipelining=True)
    messages = _batch_of(5)
    messages[2].mail_options = ["BODY=8BITMIME"]
    results = asyncio.run(collect(server, messages, size=1))
    assert all(r.delivered for r in results)
    options = {
        _message_id(e.original_content): e.mail_options for e in server.envelopes
    }
    assert "BODY=8BITMIME" in options["b2"]
    assert all("BODY=8BITMIME" not in options[i] for i in _ids(5) if i != "b2")


def test_reads_at_most_three_times_the_pool_size_ahead_with_pipelining(
    flaky: Any,
) -> None:
    server = flaky(pipelining=True)
    read = 0

    def messages() -> Iterator[tuple[Any, ...]]:
        nonlocal read
        for i in range(60):
            read += 1
            yield (SENDER, f"r{i}@example.org", content(f"w{i}"), f"w{i}")

    async def main() -> int:
        ahead = taken = 0
        async with Pool(server.host, server.port, size=2) as pool:
            async for _ in BulkSender(pool).send(messages()):
                taken += 1
                ahead = max(ahead, read - taken)
                await asyncio.sleep(0.002)  # a slow consumer
        return ahead

    assert asyncio.run(main()) <= 3 * 2 + 1
    assert len(server.envelopes) == 60


def test_stop_now_abandons_a_batch(smtp_server: Callable[..., SMTPServer]) -> None:
    server = smtp_server(handler=StallingHandler(pipelining=True))

    async def main() -> tuple[list[MessageResult], float]:
        started = asyncio.get_running_loop().time()
        async with Pool(server.host, server.port, size=1, timeout=10) as pool:
            sender = BulkSender(pool)
            asyncio.get_running_loop().call_later(0.3, lambda: sender.stop(now=True))
            got = [r async for r in sender.send(_batch_of(8))]
        return got, asyncio.get_running_loop().time() - started

    results, elapsed = asyncio.run(main())
    assert elapsed < 3
    assert 1 <= len(results) <= 3
    for result in results:
        [recipient] = result.recipients
        assert recipient.outcome is Outcome.DEFERRED
        assert recipient.error in ("stopped during the transaction", "stopped")
    assert server.envelopes == []


def test_send_one_from_many_tasks_shares_batches(flaky: Any, relay: Any) -> None:
    counted = relay(flaky(pipelining=True))

    async def main() -> list[MessageResult]:
        async with Pool(counted.host, counted.port, size=1) as pool:
            sender = BulkSender(pool)
            return await asyncio.gather(*(sender.send_one(m) for m in _batch_of(20)))

    results = asyncio.run(main())
    assert [r.id for r in results] == _ids(20)
    assert all(r.delivered for r in results)
    assert counted.turns <= 20 * 1.15 + 4


def test_bulk_sender_refuses_bad_batch_size() -> None:
    pool = Pool("127.0.0.1")
    with pytest.raises(ValueError):
        BulkSender(pool, batch_size=0)


# --- direct delivery under a TLS policy ---------------------------------------------
# A DNS server and mail exchangers on 127.0.0.2-8, as in test_routing.py.

MX_MESSAGE = b"From: sender@example.com\r\nSubject: direct\r\n\r\nHello.\r\n.dot\r\n"


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    server = DNSServer()
    yield server
    server.stop()


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    started = Hosts(_port_free_everywhere())
    yield started
    for controller in started.controllers:
        controller.stop()
    for host in started.raw:
        host.stop()


@pytest.fixture(scope="module")
def mx_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server context with a certificate for MX_CERT_NAMES."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(*MX_CERT_NAMES).configure_cert(context)
    return context


def _direct(
    dns_server: DNSServer, hosts: Hosts, to: list[list[str]], **options: Any
) -> list[MessageResult]:
    """One message for each list of forward-paths, through DirectPools with
    one session per host; the results in message order."""
    messages = [
        BulkMessage(SENDER, paths, MX_MESSAGE, str(n)) for n, paths in enumerate(to)
    ]

    async def run() -> list[MessageResult]:
        pools = DirectPools(
            dns_server.resolver(), port=hosts.port, size=1, timeout=2.0, **options
        )
        async with pools:
            sender = BulkSender(pools, max_attempts=1)
            return [r async for r in sender.send(messages)]

    results = asyncio.run(asyncio.wait_for(run(), 30))
    return sorted(results, key=lambda r: int(r.id or 0))


def test_direct_may_uses_starttls_when_offered(
    dns_server: DNSServer, hosts: Hosts, mx_tls_context: ssl.SSLContext
) -> None:
    dns_server.add("tls.test.", "MX", "10 mx.tls.test.")
    dns_server.add("mx.tls.test.", "A", "127.0.0.2")
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_tls_context)

    results = _direct(dns_server, hosts, [["a@tls.test"], ["b@tls.test"]])

    assert [r.delivered for r in results] == [["a@tls.test"], ["b@tls.test"]]
    [version] = {o.tls for r in results for o in r.recipients}
    assert version is not None and version.startswith("TLSv1.")
    assert all(o.tls_fallback is None for r in results for o in r.recipients)
    # One session, reused: one handshake, EHLO again under TLS, and both
    # mail transactions under TLS.
    assert server.handshakes == 1
    assert server.ehlo_tls == [None, version]
    assert server.envelope_tls == [version, version]
    assert [e.original_content for e in server.envelopes] == [MX_MESSAGE] * 2


def test_direct_may_stays_in_clear_text_without_starttls(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("plain.test.", "MX", "10 mx.plain.test.")
    dns_server.add("mx.plain.test.", "A", "127.0.0.2")
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler())

    [result] = _direct(dns_server, hosts, [["r@plain.test"]])

    [outcome] = result.recipients
    assert outcome.outcome is Outcome.DELIVERED
    assert (outcome.tls, outcome.tls_fallback) == (None, None)
    assert server.ehlo_tls == [None]
    assert server.envelope_tls == [None]
    assert [e.rcpt_tos for e in server.envelopes] == [["r@plain.test"]]


def test_direct_may_reconnects_in_clear_text_after_a_failed_handshake(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add(
        "fallback.test.", "MX", "10 mx.fallback.test.", "20 b.fallback.test."
    )
    dns_server.add("mx.fallback.test.", "A", "127.0.0.2")
    dns_server.add("b.fallback.test.", "A", "127.0.0.3")
    broken = hosts.smtp("127.0.0.2", TLSRecordingHandler(), _broken_tls_context())
    backup = hosts.smtp("127.0.0.3", TLSRecordingHandler())

    [result] = _direct(dns_server, hosts, [["r@fallback.test"]])

    [outcome] = result.recipients
    assert outcome.outcome is Outcome.DELIVERED
    assert outcome.reply is not None and outcome.reply.code == 250
    assert outcome.tls is None
    assert outcome.tls_fallback is not None
    assert outcome.tls_fallback.startswith("TLS handshake failed: ")
    assert outcome.tls_fallback.endswith("retried on a new clear-text session")
    # The same host, on a second session with one EHLO and no STARTTLS: the
    # message arrived once, in clear text; the next MX got nothing.
    assert broken.handshakes == 0
    assert broken.ehlo_tls == [None, None]
    assert broken.envelope_tls == [None]
    assert [e.original_content for e in broken.envelopes] == [MX_MESSAGE]
    assert backup.ehlo_tls == [] and backup.envelopes == []


def test_direct_may_goes_on_in_the_same_session_when_starttls_is_refused(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("refusing.test.", "MX", "10 mx.refusing.test.")
    dns_server.add("mx.refusing.test.", "A", "127.0.0.2")
    host = hosts.scripted(
        "127.0.0.2",
        b"220 mx.refusing.test\r\n",
        STARTTLS_EHLO,
        b"454 4.7.0 TLS not available\r\n",
        b"250 2.1.0 ok\r\n",
        b"250 2.1.5 ok\r\n",
        b"354 go on\r\n",
        *[b""] * MX_MESSAGE.count(b"\n"),
        b"250 2.0.0 queued\r\n",
        b"221 2.0.0 bye\r\n",
    )

    [result] = _direct(dns_server, hosts, [["r@refusing.test"]])

    [outcome] = result.recipients
    assert outcome.outcome is Outcome.DELIVERED
    assert outcome.tls is None
    assert outcome.tls_fallback == (
        "STARTTLS refused: 454 4.7.0 TLS not available; went on in clear text"
    )
    assert host.connections == 1
    commands = [line.split(b":")[0].split()[0] for line in host.lines[:4]]
    assert commands == [b"EHLO", b"STARTTLS", b"MAIL", b"RCPT"]
    assert host.lines[-1] == b"QUIT\r\n"


def test_direct_encrypt_skips_hosts_that_cannot_encrypt(
    dns_server: DNSServer, hosts: Hosts, mx_tls_context: ssl.SSLContext
) -> None:
    dns_server.add(
        "enc.test.",
        "MX",
        "10 plain.enc.test.",
        "20 refusing.enc.test.",
        "30 mx.enc.test.",
    )
    dns_server.add("plain.enc.test.", "A", "127.0.0.2")
    dns_server.add("refusing.enc.test.", "A", "127.0.0.3")
    dns_server.add("mx.enc.test.", "A", "127.0.0.4")
    dns_server.add("clear.test.", "MX", "10 plain.enc.test.")
    plain = hosts.smtp("127.0.0.2", TLSRecordingHandler())
    refusing = hosts.scripted(
        "127.0.0.3",
        b"220 refusing\r\n",
        STARTTLS_EHLO,
        b"454 4.7.0 TLS not available\r\n",
        b"221 2.0.0 bye\r\n",
    )
    good = hosts.smtp("127.0.0.4", TLSRecordingHandler(), mx_tls_context)

    delivered, deferred = _direct(
        dns_server, hosts, [["r@enc.test"], ["s@clear.test"]], tls="encrypt"
    )

    [outcome] = delivered.recipients
    assert outcome.outcome is Outcome.DELIVERED
    assert outcome.tls is not None and outcome.tls_fallback is None
    assert good.envelope_tls == [outcome.tls]
    assert [e.rcpt_tos for e in good.envelopes] == [["r@enc.test"]]
    # Nothing reached the hosts that could not encrypt.
    assert plain.envelopes == [] and set(plain.ehlo_tls) == {None}
    assert refusing.lines[1:] == [b"STARTTLS\r\n", b"QUIT\r\n"]
    # A domain whose only host cannot encrypt is deferred, and says why.
    [outcome] = deferred.recipients
    assert outcome.outcome is Outcome.DEFERRED
    assert outcome.error == (
        "no mail exchanger answered: plain.enc.test [127.0.0.2]: STARTTLS not offered"
    )


def test_direct_verify_checks_the_certificate_against_the_mx_name(
    dns_server: DNSServer,
    hosts: Hosts,
    mx_tls_context: ssl.SSLContext,
    client_tls_context: ssl.SSLContext,
) -> None:
    dns_server.add(
        "verify.test.", "MX", "10 wrong.verify.test.", "20 good.verify.test."
    )
    # The same certificate on both: it names good.verify.test only.
    dns_server.add("wrong.verify.test.", "A", "127.0.0.2")
    dns_server.add("good.verify.test.", "A", "127.0.0.3")
    wrong = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_tls_context)
    good = hosts.smtp("127.0.0.3", TLSRecordingHandler(), mx_tls_context)

    [result] = _direct(
        dns_server,
        hosts,
        [["r@verify.test"]],
        tls="verify",
        tls_context=client_tls_context,
    )

    [outcome] = result.recipients
    assert outcome.outcome is Outcome.DELIVERED
    assert outcome.tls is not None
    assert good.envelope_tls == [outcome.tls]
    assert wrong.envelopes == [] and wrong.handshakes == 0

    # The default context trusts the system's authorities, not the test's.
    [result] = _direct(dns_server, hosts, [["s@verify.test"]], tls="verify")
    [outcome] = result.recipients
    assert outcome.outcome is Outcome.DEFERRED
    assert outcome.tls is None
    assert outcome.error is not None
    assert outcome.error.count("certificate verify failed") == 2
    assert wrong.envelopes == [] and len(good.envelopes) == 1


def test_direct_none_never_sends_starttls(
    dns_server: DNSServer, hosts: Hosts, mx_tls_context: ssl.SSLContext
) -> None:
    dns_server.add("clear.test.", "MX", "10 mx.clear.test.")
    dns_server.add("mx.clear.test.", "A", "127.0.0.2")
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_tls_context)

    [result] = _direct(dns_server, hosts, [["r@clear.test"]], tls="none")

    [outcome] = result.recipients
    assert outcome.outcome is Outcome.DELIVERED
    assert (outcome.tls, outcome.tls_fallback) == (None, None)
    # STARTTLS was offered and never used: one EHLO, no handshake.
    assert server.handshakes == 0
    assert server.ehlo_tls == [None]
    assert server.envelope_tls == [None]


def test_direct_pools_refuse_bad_tls_settings_before_any_query(
    dns_server: DNSServer, client_tls_context: ssl.SSLContext
) -> None:
    from smtpc import tls

    resolver = dns_server.resolver()
    for bad in ["MAY", "", "dane", None, 1]:
        with pytest.raises(ValueError, match="tls must be one of"):
            DirectPools(resolver, tls=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tls='none'"):
        DirectPools(resolver, tls="none", tls_context=client_tls_context)
    with pytest.raises(ValueError, match="verifies"):
        DirectPools(resolver, tls="verify", tls_context=tls.unverified_context())
    with pytest.raises(TypeError, match="SSLContext"):
        DirectPools(resolver, tls_context="ca.pem")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not starttls="):
        DirectPools(resolver, starttls=True)
    with pytest.raises(ValueError, match="not use_tls="):
        DirectPools(resolver, use_tls=True)
    with pytest.raises(ValueError, match="port"):
        DirectPools(resolver, port=0)
    assert dns_server.queries == []
    pools = DirectPools(resolver)
    assert (pools.tls, pools.tls_context) == ("may", None)
