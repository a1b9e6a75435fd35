"""The asyncio client behaves as the blocking one.

Most scenarios of test_compat.py run here again, with ``smtp_module`` and
``smtpc`` standing for a module whose ``SMTP`` runs :class:`smtpc.aio.SMTP`'s
coroutines on an event loop in another thread: the same calls must give the
same outcome, and test_compat's ``agree()`` compares it with smtplib's.
The tests after those cover what only an asyncio client can get wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import ssl
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import test_compat
from servers import RecordingHandler, ScriptedServer, SMTPServer
from test_compat import (  # noqa: F401 - collected here with the client below
    test_421_on_mail_closes_session,
    test_all_recipients_refused,
    test_auth_hook,
    test_auth_with_own_authobject,
    test_close_twice_then_reconnect,
    test_connect_returns_greeting,
    test_context_manager_sends_quit,
    test_data_refused,
    test_disconnect_during_ehlo,
    test_ehlo_and_extensions,
    test_ehlo_refused_falls_back_to_helo,
    test_greeting_refused_raises_connect_error,
    test_helo,
    test_helo_refused_raises_helo_error,
    test_lmtp_says_lhlo,
    test_lmtp_with_smtp_sink,
    test_login_plain,
    test_login_prefers_cram_md5,
    test_login_without_auth_offered,
    test_login_wrong_password,
    test_mail_and_rcpt_options,
    test_multiline_reply_is_joined,
    test_newline_in_command_is_refused,
    test_non_ascii_str_message_is_refused,
    test_not_connected_raises_server_disconnected,
    test_over_long_reply_line_is_refused,
    test_quit_then_commands_raise,
    test_send_message,
    test_send_message_explicit_envelope,
    test_send_message_international,
    test_send_message_international_needs_smtputf8,
    test_sender_refused,
    test_sendmail,
    test_sendmail_some_recipients_refused,
    test_sendmail_to_one_address_as_str,
    test_silent_server_times_out,
    test_simple_commands,
    test_smtp_sink,
    test_smtp_ssl,
    test_smtp_ssl_refuses_untrusted_certificate,
    test_smtpc_debug_output_hides_credentials,
    test_smtpc_refuses_control_characters_before_sending,
    test_smtpc_refuses_nul_in_command,
    test_smtpc_sendmail_binary_file,
    test_smtpc_sendmail_chunks,
    test_smtpc_sendmail_file_like_without_name,
    test_smtpc_starttls_checks_the_name_given,
    test_smtpc_starttls_verifies_by_default,
    test_smtpc_timeout_is_also_timeout_error,
    test_source_address,
    test_starttls,
    test_starttls_not_offered,
    test_timeout_zero_is_refused,
)

import smtpc
import smtpc.aio

SENDER = test_compat.SENDER
RECIPIENT = test_compat.RECIPIENT
MESSAGE = test_compat.MESSAGE

_loop: asyncio.AbstractEventLoop | None = None


@pytest.fixture(scope="module", autouse=True)
def event_loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop, in its own thread, for the blocking stand-ins."""
    global _loop
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    _loop = loop
    yield loop
    _loop = None
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _call(coro: Coroutine[Any, Any, Any]) -> Any:
    assert _loop is not None
    return asyncio.run_coroutine_threadsafe(coro, _loop).result(30)


class _Blocking:
    """A blocking stand-in: each coroutine method of the asyncio client runs
    to completion on the loop thread; other attributes pass through."""

    _aio_class: type[smtpc.aio.SMTP] = smtpc.aio.SMTP

    def __init__(self, host: str = "", port: int = 0, *args: Any, **kw: Any) -> None:
        client = self._aio_class(host, port, *args, **kw)
        object.__setattr__(self, "_client", client)
        if host:
            _call(client.__aenter__())

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if inspect.iscoroutinefunction(value):
            return lambda *a, **k: _call(value(*a, **k))
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)

    def __enter__(self) -> _Blocking:
        return self

    def __exit__(self, *exc: Any) -> None:
        _call(self._client.__aexit__(*exc))


class _BlockingSSL(_Blocking):
    def __init__(
        self, host: str = "", port: int = 0, *, context: Any = None, **kw: Any
    ) -> None:
        super().__init__(host, port, use_tls=True, tls_context=context, **kw)


class _BlockingLMTP(_Blocking):
    _aio_class = smtpc.aio.LMTP


def _module() -> types.ModuleType:
    module = types.ModuleType("smtpc_aio_blocking")
    module.__dict__.update(
        {name: getattr(smtpc, name) for name in smtpc.__all__ if name[0] != "_"}
    )
    module.SMTP = _Blocking  # type: ignore[attr-defined]
    module.SMTP_SSL = _BlockingSSL  # type: ignore[attr-defined]
    module.LMTP = _BlockingLMTP  # type: ignore[attr-defined]
    return module


@pytest.fixture
def smtp_module() -> types.ModuleType:
    """test_compat's module under test: the asyncio client, run blocking."""
    return _module()


@pytest.fixture(name="smtpc")
def smtpc_fixture() -> types.ModuleType:
    return _module()


@pytest.fixture
def auth_server(smtp_server: Callable[..., SMTPServer]) -> SMTPServer:
    return smtp_server(auth=True)


# --- what only the asyncio client can get wrong -------------------------------


def test_import_smtpc_does_not_import_asyncio() -> None:
    code = "import sys, smtpc; print('asyncio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    assert smtpc.AsyncSMTP is smtpc.aio.SMTP


def test_sessions_run_concurrently_on_one_loop(smtpd: SMTPServer) -> None:
    async def one(i: int) -> dict[str, tuple[int, bytes]]:
        async with smtpc.AsyncSMTP(smtpd.host, smtpd.port) as client:
            return await client.sendmail(SENDER, f"r{i}@example.org", MESSAGE)

    async def main() -> list[dict[str, tuple[int, bytes]]]:
        return await asyncio.gather(*(one(i) for i in range(10)))

    assert asyncio.run(main()) == [{}] * 10
    assert sorted(e.rcpt_tos[0] for e in smtpd.envelopes) == sorted(
        f"r{i}@example.org" for i in range(10)
    )


def test_deliver_reports_each_recipient(smtpd: SMTPServer) -> None:
    async def main() -> Any:
        async with smtpc.AsyncSMTP(smtpd.host, smtpd.port) as client:
            to = [RECIPIENT, "refuse@example.org", "defer@example.net"]
            return await client.deliver(SENDER, to, MESSAGE)

    result = asyncio.run(main())
    assert result.accepted == [RECIPIENT]
    assert {a: c for a, (c, _) in result.refused.items()} == {
        "refuse@example.org": 550,
        "defer@example.net": 451,
    }
    assert [r.reply.enhanced for r in result.recipients] == [None, "5.1.1", "4.3.0"]


def test_large_message_streams_with_drain(smtpd: SMTPServer) -> None:
    # Many chunks: the transaction yields DRAIN between them.
    line = b"x" * 998 + b"\r\n"
    chunks = [line * 64 for _ in range(40)]

    async def main() -> dict[str, tuple[int, bytes]]:
        async with smtpc.AsyncSMTP(smtpd.host, smtpd.port, buffer_size=64) as c:
            return await c.sendmail(SENDER, RECIPIENT, iter(chunks))

    assert asyncio.run(main()) == {}
    assert smtpd.envelopes[-1].original_content == b"".join(chunks)


def test_bytearray_chunks_are_copied_before_reuse(smtpd: SMTPServer) -> None:
    # The caller refills one bytearray: what was sent must not change with it.
    def refill() -> Iterator[bytearray]:
        buffer = bytearray(40000)
        for letter in b"abc":
            buffer[:] = (bytes([letter]) * 78 + b"\r\n") * 500
            yield buffer

    async def main() -> None:
        async with smtpc.AsyncSMTP(smtpd.host, smtpd.port) as client:
            await client.sendmail(SENDER, RECIPIENT, refill())

    asyncio.run(main())
    stored = smtpd.envelopes[-1].original_content
    assert stored == b"".join((bytes([c]) * 78 + b"\r\n") * 500 for c in b"abc")


def test_reply_wait_timeout_closes_session(scripted_server: Any) -> None:
    server = scripted_server(b"220 mx\r\n", b"")  # EHLO gets no reply

    async def main() -> Any:
        client = smtpc.AsyncSMTP(server.host, server.port, timeout=0.2)
        async with client:
            with pytest.raises(smtpc.SMTPTimeoutError) as info:
                await client.ehlo()
            return info.value, client.is_connected

    error, connected = asyncio.run(main())
    assert isinstance(error, TimeoutError)
    assert isinstance(error, smtpc.SMTPServerDisconnected)
    assert connected is False


def test_cancelled_transaction_closes_session(smtp_server: Any) -> None:
    # MAIL gets no reply.
    server = ScriptedServer(b"220 mx\r\n", [test_compat.EHLO_REPLY, b""])
    try:

        async def main() -> bool:
            client = smtpc.AsyncSMTP(server.host, server.port)
            await client.connect()
            task = asyncio.create_task(client.sendmail(SENDER, RECIPIENT, MESSAGE))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return client.is_connected

        assert asyncio.run(main()) is False
    finally:
        server.stop()


def test_server_closing_mid_transaction_keeps_result(scripted_server: Any) -> None:
    replies = [test_compat.EHLO_REPLY, b"250 OK\r\n", b"250 OK\r\n", b"354 go\r\n"]
    server = scripted_server(b"220 mx\r\n", *replies, None)

    async def main() -> Any:
        client = smtpc.AsyncSMTP(server.host, server.port)
        await client.connect()
        with pytest.raises(smtpc.SMTPServerDisconnected) as info:
            await client.deliver(SENDER, RECIPIENT, MESSAGE)
        return info.value, client.is_connected

    error, connected = asyncio.run(main())
    assert connected is False
    assert error.result.recipients[0].reply.code == 250
    assert error.result.final is None


def test_data_after_starttls_220_is_refused(scripted_server: Any) -> None:
    ehlo = b"250-mx\r\n250 STARTTLS\r\n"
    server = scripted_server(b"220 mx\r\n", ehlo, b"220 go ahead\r\n250 injected\r\n")

    async def main() -> None:
        async with smtpc.AsyncSMTP(server.host, server.port) as client:
            with pytest.raises(smtpc.RemoteProtocolError):
                await client.starttls(context=ssl.create_default_context())
            assert not client.is_connected

    asyncio.run(main())


def test_implicit_tls_with_connect_arguments(
    smtp_server: Any, client_tls_context: ssl.SSLContext
) -> None:
    server = smtp_server(implicit_tls=True)

    async def main() -> Any:
        client = smtpc.AsyncSMTP(timeout=5)
        await client.connect(
            server.host, server.port, use_tls=True, tls_context=client_tls_context
        )
        async with client:
            assert client.tls_version in ("TLSv1.2", "TLSv1.3")
            return await client.sendmail(SENDER, RECIPIENT, MESSAGE)

    assert asyncio.run(main()) == {}
    assert server.envelopes[-1].original_content == MESSAGE


def test_tls_version_is_none_in_clear_text(smtpd: SMTPServer) -> None:
    async def main() -> str | None:
        async with smtpc.AsyncSMTP(smtpd.host, smtpd.port) as client:
            await client.noop()
            return client.tls_version

    assert asyncio.run(main()) is None


# --- deliver_many ----------------------------------------------------------------

GREETING = b"220 mx.example.net ESMTP\r\n"
OK = b"250 OK\r\n"
GO = b"354 go\r\n"


def _ehlo(*keywords: bytes) -> bytes:
    lines = [b"mx.example.net", *keywords]
    head = b"".join(b"250-" + line + b"\r\n" for line in lines[:-1])
    return head + b"250 " + lines[-1] + b"\r\n"


def _batch(count: int) -> list[tuple[str, list[str], bytes]]:
    return [(SENDER, [f"r{i}@example.org"], b"m%d\r\n" % i) for i in range(count)]


@dataclass
class _PipeliningHandler(RecordingHandler):
    """RecordingHandler that offers PIPELINING and answers the content of a
    message holding ``refuse_content`` with 554."""

    refuse_content: bytes | None = None

    async def handle_EHLO(
        self,
        server: Any,
        session: Any,
        envelope: Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        lines = await super().handle_EHLO(
            server, session, envelope, hostname, responses
        )
        return [*lines[:-1], "250-PIPELINING", lines[-1]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refused = self.refuse_content
        if refused is not None and refused in envelope.original_content:
            return "554 5.6.0 Message content refused"
        return await super().handle_DATA(server, session, envelope)


class _HoldingServer:
    """Answers the end of each message's content only once the next
    message's MAIL, RCPT and DATA have come, or after half a second: a
    client that pipelines sends them first, one that waits for that reply
    waits the half second. ``ahead`` records, message by message, whether
    the next commands came first; ``contents`` each message's content."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.contents: list[bytes] = []
        self.ahead: list[bool] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            try:
                self._session(conn)
            except (OSError, AssertionError) as exc:
                self.error = exc

    def _session(self, conn: socket.socket) -> None:
        pending = b""

        def receive(enough: Callable[[], bool], timeout: float = 5) -> bool:
            nonlocal pending
            conn.settimeout(timeout)
            while not enough():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    return False
                assert chunk, "the client closed the session"
                pending += chunk
            return True

        def line() -> bytes:
            nonlocal pending
            receive(lambda: b"\r\n" in pending)
            first, _, pending = pending.partition(b"\r\n")
            return first

        def content_ended() -> bool:
            return b"\r\n.\r\n" in pending

        def next_group_came() -> bool:
            return pending.count(b"\r\n") >= 3

        conn.sendall(GREETING)
        line()
        conn.sendall(_ehlo(b"PIPELINING"))
        while (verb := line()[:4]) == b"MAIL":
            assert [line()[:4], line()[:4]] == [b"RCPT", b"DATA"]
            conn.sendall(OK + OK + GO)
            receive(content_ended)
            content, _, pending = pending.partition(b"\r\n.\r\n")
            self.contents.append(content + b"\r\n")
            self.ahead.append(receive(next_group_came, timeout=0.5))
            conn.sendall(OK)
        assert verb == b"QUIT"
        conn.sendall(b"221 bye\r\n")

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def test_deliver_many_pipelines_each_message_behind_the_last() -> None:
    server = _HoldingServer()

    async def main() -> list[Any]:
        async with smtpc.AsyncSMTP("127.0.0.1", server.port, timeout=3) as client:
            return await client.deliver_many(_batch(4))

    try:
        results = asyncio.run(main())
    finally:
        server.close()
    assert server.error is None
    assert server.ahead == [True, True, True, False]
    assert [r.delivered for r in results] == [True] * 4
    assert [r.recipients[0].address for r in results] == [
        f"r{i}@example.org" for i in range(4)
    ]
    assert server.contents == [b"m%d\r\n" % i for i in range(4)]


def test_deliver_many_to_smtp_sink(smtp_sink: Any) -> None:
    messages = [
        (SENDER, [f"r{i}@example.org"], b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        for i in range(5)
    ]

    async def main() -> list[Any]:
        async with smtpc.AsyncSMTP(smtp_sink.host, smtp_sink.port) as client:
            await client.ehlo()
            assert client.has_extn("pipelining")
            results = await client.deliver_many(iter(messages))
            assert client.last_results is results
            assert client.last_result is results[-1]
            return results

    results = asyncio.run(main())
    assert [r.delivered for r in results] == [True] * 5
    stored = smtp_sink.messages(5)
    assert sorted(m.content for m in stored) == [m[2] for m in messages]


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_deliver_many_reports_each_refusal_in_order(
    smtp_server: Callable[..., SMTPServer], pipelining: bool
) -> None:
    handler = _PipeliningHandler() if pipelining else RecordingHandler()
    server = smtp_server(handler=handler)
    messages = [
        (SENDER, ["a@example.org"], b"one\r\n"),
        (SENDER, ["refuse@example.org"], b"two\r\n"),
        (SENDER, ["b@example.org", "defer@example.org"], b"three\r\n"),
    ]

    async def main() -> list[Any]:
        async with smtpc.AsyncSMTP(server.host, server.port) as client:
            results = await client.deliver_many(messages)
            assert client.has_extn("pipelining") is pipelining
            return results

    results = asyncio.run(main())
    assert [r.delivered for r in results] == [True, False, True]
    assert results[1].refused["refuse@example.org"][0] == 550
    assert list(results[2].refused) == ["defer@example.org"]
    assert results[2].refused["defer@example.org"][0] == 451
    assert [e.original_content for e in server.envelopes] == [b"one\r\n", b"three\r\n"]


def test_deliver_many_refused_content_in_the_middle(
    smtp_server: Callable[..., SMTPServer],
) -> None:
    # The 554 for the second message comes after the third one's commands
    # went out: it is paired with the second all the same.
    server = smtp_server(handler=_PipeliningHandler(refuse_content=b"m1"))

    async def main() -> list[Any]:
        async with smtpc.AsyncSMTP(server.host, server.port) as client:
            return await client.deliver_many(_batch(4))

    results = asyncio.run(main())
    assert [r.delivered for r in results] == [True, False, True, True]
    assert [r.final.code for r in results] == [250, 554, 250, 250]
    assert results[1].accepted == []
    stored = [e.original_content for e in server.envelopes]
    assert stored == [b"m0\r\n", b"m2\r\n", b"m3\r\n"]


def test_deliver_many_raises_when_a_421_ends_the_batch(scripted_server: Any) -> None:
    server = scripted_server(
        GREETING,
        _ehlo(b"HELP"),
        OK,
        OK,
        GO,
        OK,  # the first message
        OK,
        OK,
        GO,
        b"421 4.3.2 closing\r\n",  # the second
    )

    async def main() -> Any:
        client = smtpc.AsyncSMTP(server.host, server.port)
        await client.connect()
        with pytest.raises(smtpc.SMTPServerDisconnected, match="after 2 messages"):
            await client.deliver_many(_batch(5))
        return client

    client = asyncio.run(main())
    assert [r.delivered for r in client.last_results] == [True, False]
    assert client.last_results[1].final.code == 421
    assert not client.is_connected


def test_deliver_many_reports_a_message_accepted_before_the_session_ends(
    scripted_server: Any,
) -> None:
    server = scripted_server(
        GREETING,
        _ehlo(b"PIPELINING"),
        OK,
        OK,
        GO,  # the first group
        OK,  # the first message's final reply, read behind the second group
        OK,
        b"421 4.3.2 closing\r\n",  # the second MAIL and RCPT
    )

    async def main() -> Any:
        client = smtpc.AsyncSMTP(server.host, server.port)
        await client.connect()
        with pytest.raises(smtpc.SMTPServerDisconnected):
            await client.deliver_many(_batch(3))
        return client

    client = asyncio.run(main())
    first, second = client.last_results
    assert first.delivered and first.final.code == 250
    assert second.recipients[0].reply.code == 421
    assert not second.delivered


def test_deliver_many_reports_every_message_when_the_connection_drops(
    scripted_server: Any,
) -> None:
    # The server closes the connection after the second message's content,
    # without a reply: the first is delivered, the second reported without
    # a final reply, and the third, whose commands went with that content,
    # with the session lost; nothing after it was taken.
    server = scripted_server(
        GREETING,
        _ehlo(b"PIPELINING"),
        OK,
        OK,
        GO,  # the first group
        OK,  # the first message
        OK,
        OK,
        GO,  # the second group
        None,  # the second message's content: the connection drops
    )
    taken: list[int] = []

    def messages() -> Iterator[tuple[str, list[str], bytes]]:
        for i, message in enumerate(_batch(5)):
            taken.append(i)
            yield message

    async def main() -> Any:
        client = smtpc.AsyncSMTP(server.host, server.port)
        await client.connect()
        with pytest.raises(smtpc.SMTPServerDisconnected) as info:
            await client.deliver_many(messages())
        return client, info.value

    client, error = asyncio.run(main())
    first, second, third = client.last_results
    assert taken == [0, 1, 2]
    assert first.delivered and first.final.code == 250
    assert second.data.code == 354 and second.final is None
    assert not second.delivered and second.error is error
    assert third.mail is None and not third.delivered
    assert error.result is third
    assert not client.is_connected


def test_deliver_many_reports_the_message_before_a_broken_source(
    scripted_server: Any,
) -> None:
    server = scripted_server(
        GREETING, _ehlo(b"PIPELINING"), OK, OK, GO, OK, OK, OK, GO, None
    )

    def broken() -> Iterator[bytes]:
        yield b"Subject: x\r\n\r\nfirst\r\n"
        raise RuntimeError("the source broke")

    messages = [(SENDER, [RECIPIENT], b"one\r\n"), (SENDER, [RECIPIENT], broken())]

    async def main() -> Any:
        client = smtpc.AsyncSMTP(server.host, server.port)
        await client.connect()
        with pytest.raises(RuntimeError, match="the source broke"):
            await client.deliver_many(messages)
        return client

    client = asyncio.run(main())
    # The first message's final reply came before the second's content
    # broke; SMTP cannot abandon content, so the session is closed.
    [first] = client.last_results
    assert first.delivered and first.final.code == 250
    assert not client.is_connected


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelining"])
def test_deliver_many_bad_address_in_the_middle(
    smtp_server: Callable[..., SMTPServer], pipelining: bool
) -> None:
    smtpd = smtp_server(handler=_PipeliningHandler() if pipelining else None)
    messages = [
        (SENDER, ["a@example.org"], b"one\r\n"),
        (SENDER, ["bad\r\naddress@example.org"], b"two\r\n"),
        (SENDER, ["c@example.org"], b"three\r\n"),
    ]

    async def main() -> tuple[Any, Any]:
        async with smtpc.AsyncSMTP(smtpd.host, smtpd.port) as client:
            with pytest.raises(ValueError):
                await client.deliver_many(messages)
            done = client.last_results
            # Nothing of the bad message was sent: the session goes on.
            after = await client.deliver_many(messages[2:])
            return done, after

    done, after = asyncio.run(main())
    assert [r.delivered for r in done] == [True]
    assert [r.delivered for r in after] == [True]
    stored = [e.original_content for e in smtpd.envelopes]
    assert stored == [b"one\r\n", b"three\r\n"]


def test_deliver_many_of_nothing(smtpd: SMTPServer) -> None:
    async def main() -> list[Any]:
        async with smtpc.AsyncSMTP(smtpd.host, smtpd.port) as client:
            return await client.deliver_many([])

    assert asyncio.run(main()) == []
    assert smtpd.envelopes == []


def test_deliver_many_times_out_on_a_silent_server(scripted_server: Any) -> None:
    # MAIL, RCPT and DATA get no reply.
    server = scripted_server(GREETING, _ehlo(b"PIPELINING"), b"", b"", b"")

    async def main() -> Any:
        client = smtpc.AsyncSMTP(server.host, server.port, timeout=0.3)
        await client.connect()
        with pytest.raises(smtpc.SMTPTimeoutError):
            await client.deliver_many(_batch(2))
        return client

    client = asyncio.run(main())
    assert not client.is_connected
    [first] = client.last_results
    assert first.mail is None and not first.delivered
    assert isinstance(first.error, smtpc.SMTPTimeoutError)
