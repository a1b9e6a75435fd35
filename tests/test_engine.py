"""Transcript tests of the sans-I/O engine: server lines in, client lines out.

Each transcript reads like the RFC examples. ``C:`` lines are what the client
must have sent by the time it waits for the ``S:`` lines below them, so a
pipelined group shows as several ``C:`` lines before their replies.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpc import core
from smtpc.engine import (
    DRAIN,
    READ,
    START_TLS,
    Envelope,
    Reply,
    ReplyReader,
    Session,
    State,
    Steps,
    run_transaction,
)
from smtpc.engine.transaction import run_many
from smtpc.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SMTPServerDisconnected,
)
from smtpc.operations import hello

EHLO_PIPELINING = """\
S: 220 mx.example.org ESMTP
C: EHLO client.example.com
S: 250-mx.example.org
S: 250-PIPELINING
S: 250-SIZE 1000
S: 250-8BITMIME
S: 250 ENHANCEDSTATUSCODES
"""


class Transcript:
    """Plays the server side of a transcript against engine steps."""

    def __init__(self, text: str, lmtp: bool = False) -> None:
        self.items = [
            (line[:2], line[3:].encode("utf-8") + b"\r\n")
            for line in text.splitlines()
            if line.strip()
        ]
        self.sent = bytearray()
        self.session = Session(core.Emitter(self._sink, 64), lmtp=lmtp)
        self.position = 0
        self.tls_started = False

    def _sink(self, pieces: list[bytes | memoryview]) -> None:
        for piece in pieces:
            self.sent += piece

    def _expected_before(self, index: int) -> bytes:
        return b"".join(data for who, data in self.items[:index] if who == "C:")

    def run(self, steps: Steps) -> object:
        """Drive ``steps`` to the end; returns what they return."""
        try:
            step = next(steps)
            while True:
                if step is READ:
                    try:
                        reply = self._reply()
                    except SMTPServerDisconnected as exc:
                        # As a driver does: the steps learn of the loss.
                        step = steps.throw(exc)
                        continue
                    step = steps.send(reply)
                elif step is START_TLS:
                    self.tls_started = True
                    step = steps.send(None)
                else:
                    assert step is DRAIN
                    step = steps.send(None)
        except StopIteration as stop:
            return stop.value

    def _reply(self) -> Reply:
        self.session.emitter.flush()
        while True:
            reply = self.session.next_reply()
            if reply is not None:
                return reply
            # The next server line: skip over the client lines before it.
            while self.items[self.position][0] == "C:":
                self.position += 1
            assert bytes(self.sent) == self._expected_before(self.position)
            self.session.receive_data(self.items[self.position][1])
            self.position += 1

    def finish(self) -> None:
        """Everything the transcript says the client sends was sent."""
        self.session.emitter.flush()
        assert bytes(self.sent) == self._expected_before(len(self.items))
        assert all(who == "C:" for who, _ in self.items[self.position :])


def start(text: str, lmtp: bool = False) -> Transcript:
    play = Transcript(text, lmtp)
    play.run(play.session.greeting())
    play.run(hello(play.session, "client.example.com"))
    return play


def send(
    play: Transcript, rcpts: list[str], content: list[bytes], **kw: object
) -> object:
    envelope = Envelope("a@example.com", rcpts, list(kw.pop("params", [])))  # type: ignore[call-overload]
    return play.run(run_transaction(play.session, envelope, content, **kw))  # type: ignore[arg-type]


def test_ehlo_keeps_extension_keywords_and_parameters() -> None:
    play = start(EHLO_PIPELINING)
    assert play.session.features == {
        "pipelining": "",
        "size": "1000",
        "8bitmime": "",
        "enhancedstatuscodes": "",
    }
    assert play.session.state is State.READY
    play.finish()


def test_helo_follows_a_refused_ehlo() -> None:
    play = start(
        """\
S: 220 old.example.org
C: EHLO client.example.com
S: 502 5.5.1 command not recognised
C: HELO client.example.com
S: 250 old.example.org
"""
    )
    assert not play.session.does_esmtp
    assert play.session.helo_resp == b"old.example.org"
    play.finish()


def test_transaction_without_pipelining_waits_for_each_reply() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250 mx
C: MAIL FROM:<a@example.com>
S: 250 ok
C: RCPT TO:<b@example.org>
S: 250 ok
C: DATA
S: 354 go ahead
C: ..dot
C: line
C: .
S: 250 queued as 12AB
"""
    )
    result = send(play, ["b@example.org"], [b".dot\nline"])
    assert result.accepted == ["b@example.org"]  # type: ignore[attr-defined]
    assert result.queue_id == "12AB"  # type: ignore[attr-defined]
    assert play.session.state is State.READY
    play.finish()


def test_pipelining_sends_mail_rcpt_and_data_in_one_group() -> None:
    play = start(
        EHLO_PIPELINING
        + """\
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
C: RCPT TO:<nobody@example.org>
C: RCPT TO:<c@example.org>
C: DATA
S: 250 2.1.0 ok
S: 250 2.1.5 ok
S: 550 5.1.1 no such user
S: 250 2.1.5 ok
S: 354 go ahead
C: hello
C: .
S: 250 2.0.0 ok
"""
    )
    result = send(
        play, ["b@example.org", "nobody@example.org", "c@example.org"], [b"hello\r\n"]
    )
    assert result.accepted == ["b@example.org", "c@example.org"]  # type: ignore[attr-defined]
    assert result.refused == {  # type: ignore[attr-defined]
        "nobody@example.org": (550, b"5.1.1 no such user")
    }
    assert result.recipients[1].reply.enhanced == "5.1.1"  # type: ignore[attr-defined]
    play.finish()


def test_every_recipient_refused_ends_a_data_the_server_accepted() -> None:
    # RFC 2920 §3.1: DATA accepted with no valid recipient gets no content.
    play = start(
        EHLO_PIPELINING
        + """\
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
C: DATA
S: 250 ok
S: 550 no
S: 354 go ahead
C: .
S: 554 no valid recipients
C: RSET
S: 250 reset
"""
    )
    result = send(play, ["b@example.org"], [b"never sent\r\n"])
    assert result.accepted == []  # type: ignore[attr-defined]
    assert play.session.state is State.READY
    play.finish()


def test_refused_reverse_path_resets_the_transaction() -> None:
    play = start(
        EHLO_PIPELINING
        + """\
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
C: DATA
S: 553 5.1.8 bad sender
S: 503 5.5.1 no mail transaction
S: 503 5.5.1 no mail transaction
C: RSET
S: 250 reset
"""
    )
    result = send(play, ["b@example.org"], [b"x"])
    assert result.mail.code == 553  # type: ignore[attr-defined]
    assert result.final is None  # type: ignore[attr-defined]
    play.finish()


def test_421_at_rcpt_closes_the_session_and_sends_nothing_more() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250 mx
C: MAIL FROM:<a@example.com>
S: 250 ok
C: RCPT TO:<b@example.org>
S: 421 4.3.2 shutting down
"""
    )
    result = send(play, ["b@example.org", "c@example.org"], [b"x"])
    assert play.session.state is State.CLOSED
    assert result.recipients[1].reply is None  # type: ignore[attr-defined]
    play.finish()


def test_bdat_with_pipelining_sends_chunks_without_dot_stuffing() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250-PIPELINING
S: 250 CHUNKING
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
S: 250 ok
S: 250 ok
C: BDAT 6
C: .one
C: BDAT 5
C: two
C: BDAT 0 LAST
S: 250 6 octets
S: 250 5 octets
S: 250 message accepted
"""
    )
    result = send(play, ["b@example.org"], [b".one\n", b"two\n"])
    assert result.final.code == 250  # type: ignore[attr-defined]
    assert result.final.message == b"message accepted"  # type: ignore[attr-defined]
    play.finish()


def test_single_chunk_goes_as_bdat_last() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250 CHUNKING
C: MAIL FROM:<a@example.com>
S: 250 ok
C: RCPT TO:<b@example.org>
S: 250 ok
C: BDAT 4 LAST
C: hi
S: 250 accepted
"""
    )
    result = send(play, ["b@example.org"], [b"hi\r\n"], single_chunk=True)
    assert result.delivered  # type: ignore[attr-defined]
    play.finish()


def test_bdat_ends_the_last_line_as_data_does() -> None:
    # A last line without a line ending gets its CRLF in a final chunk, so
    # the octets delivered are the same over BDAT and DATA.
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250-PIPELINING
S: 250 CHUNKING
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
S: 250 ok
S: 250 ok
C: BDAT 5
C: one
C: BDAT 3
C: twoBDAT 2 LAST
C:
S: 250 5 octets
S: 250 3 octets
S: 250 message accepted
"""
    )
    result = send(play, ["b@example.org"], [b"one\n", b"two"])
    assert result.delivered  # type: ignore[attr-defined]
    play.finish()


def test_single_bdat_chunk_ends_its_last_line() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250 CHUNKING
C: MAIL FROM:<a@example.com>
S: 250 ok
C: RCPT TO:<b@example.org>
S: 250 ok
C: BDAT 4 LAST
C: hi
S: 250 accepted
"""
    )
    result = send(play, ["b@example.org"], [b"hi"], single_chunk=True)
    assert result.delivered  # type: ignore[attr-defined]
    play.finish()


def test_small_message_goes_with_its_envelope_in_one_group() -> None:
    # RFC 3030 §4.2 with RFC 2920: one round trip for the whole transaction.
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250-PIPELINING
S: 250 CHUNKING
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
C: BDAT 4 LAST
C: hi
S: 250 ok
S: 250 ok
S: 250 accepted
"""
    )
    result = send(play, ["b@example.org"], [b"hi\n"], single_chunk=True)
    assert result.final.message == b"accepted"  # type: ignore[attr-defined]
    assert result.delivered  # type: ignore[attr-defined]
    play.finish()


def test_messages_back_to_back_take_one_group_each() -> None:
    # RFC 2920 §3.1: the end of one message's content leads the next group.
    play = start(
        EHLO_PIPELINING
        + """\
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
C: DATA
S: 250 ok
S: 250 ok
S: 354 go
C: one
C: .
C: MAIL FROM:<a@example.com>
C: RCPT TO:<nobody@example.org>
C: DATA
S: 250 queued as ONE
S: 250 ok
S: 550 5.1.1 no such user
S: 554 no valid recipients
C: RSET
S: 250 reset
C: MAIL FROM:<a@example.com>
C: RCPT TO:<c@example.org>
C: DATA
S: 250 ok
S: 250 ok
S: 354 go
C: three
C: .
S: 451 4.3.0 try later
"""
    )
    jobs = [
        (Envelope("a@example.com", [rcpt]), [body], False)
        for rcpt, body in [
            ("b@example.org", b"one\n"),
            ("nobody@example.org", b"two\n"),
            ("c@example.org", b"three\n"),
        ]
    ]
    results: list[object] = []
    play.run(run_many(play.session, jobs, results.append))
    assert [r.queue_id for r in results] == ["ONE", None, None]  # type: ignore[attr-defined]
    assert [r.delivered for r in results] == [True, False, False]  # type: ignore[attr-defined]
    assert results[2].final.code == 451  # type: ignore[attr-defined]
    assert play.session.state is State.READY
    play.finish()


def test_a_source_failing_mid_bdat_closes_the_session() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250 CHUNKING
C: MAIL FROM:<a@example.com>
S: 250 ok
C: RCPT TO:<b@example.org>
S: 250 ok
C: BDAT 4
C: hi
S: 250 4 octets
"""
    )

    def content() -> Any:
        yield b"hi\r\n"
        raise OSError("the file went away")

    with pytest.raises(OSError, match="went away"):
        send(play, ["b@example.org"], content())  # type: ignore[arg-type]
    assert play.session.state is State.CLOSED
    play.finish()


def test_chunking_can_be_turned_off() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250 CHUNKING
C: MAIL FROM:<a@example.com>
S: 250 ok
C: RCPT TO:<b@example.org>
S: 250 ok
C: DATA
S: 354 go
C: hi
C: .
S: 250 accepted
"""
    )
    send(play, ["b@example.org"], [b"hi"], chunking=False)
    play.finish()


def test_lmtp_reads_one_final_reply_per_accepted_recipient() -> None:
    play = start(
        """\
S: 220 lmtp
C: EHLO client.example.com
S: 250-lmtp
S: 250 PIPELINING
C: MAIL FROM:<a@example.com>
C: RCPT TO:<b@example.org>
C: RCPT TO:<x@example.org>
C: RCPT TO:<c@example.org>
C: DATA
S: 250 ok
S: 250 ok
S: 550 unknown
S: 250 ok
S: 354 go
C: hi
C: .
S: 250 2.0.0 b delivered
S: 452 4.2.2 c over quota
""",
        lmtp=True,
    )
    result = send(play, ["b@example.org", "x@example.org", "c@example.org"], [b"hi"])
    assert result.accepted == ["b@example.org"]  # type: ignore[attr-defined]
    assert result.refused == {  # type: ignore[attr-defined]
        "x@example.org": (550, b"unknown"),
        "c@example.org": (452, b"4.2.2 c over quota"),
    }
    play.finish()


def test_starttls_refuses_bytes_sent_before_the_handshake() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250 STARTTLS
C: STARTTLS
S: 220 go ahead
"""
    )
    # The 220 arrives with a forged reply behind it in the same read.
    play.items[-1] = ("S:", b"220 go ahead\r\n250-mx\r\n250 AUTH PLAIN\r\n")
    with pytest.raises(RemoteProtocolError, match="after its 220"):
        play.run(play.session.starttls())
    assert not play.tls_started
    assert play.session.state is State.CLOSED


def test_starttls_forgets_what_ehlo_said() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250 STARTTLS
C: STARTTLS
S: 220 go ahead
"""
    )
    play.run(play.session.starttls())
    assert play.tls_started
    assert play.session.features == {}
    assert play.session.ehlo_resp is None
    assert play.session.state is State.GREETED
    play.finish()


def test_auth_answers_challenges_and_masks_them_in_the_trace() -> None:
    play = start(
        """\
S: 220 mx
C: EHLO client.example.com
S: 250-mx
S: 250 AUTH LOGIN
C: AUTH LOGIN dXNlcg==
S: 334 UGFzc3dvcmQ6
C: c2VjcmV0
S: 235 2.7.0 ok
"""
    )
    shown: list[bytes] = []
    play.session.on_command = shown.append
    answers = iter([b"user", b"secret"])
    steps = play.session.authenticate("LOGIN", lambda challenge: next(answers))
    reply = play.run(steps)
    assert reply.code == 235  # type: ignore[attr-defined]
    assert shown == [b"AUTH LOGIN ****", b"****"]
    play.finish()


def test_auth_stops_after_too_many_challenges() -> None:
    play = start(
        "S: 220 mx\nC: EHLO client.example.com\nS: 250 mx\nC: AUTH X\n"
        + "S: 334 \nC: \n" * 3
        + "S: 334 \n"
    )
    steps = play.session.authenticate(
        "X", lambda c: None if c is None else b"", max_challenges=3
    )
    with pytest.raises(RemoteProtocolError, match="infinite loop"):
        play.run(steps)


def test_rcpt_outside_a_mail_transaction_is_refused_before_sending() -> None:
    play = start("S: 220 mx\nC: EHLO client.example.com\nS: 250 mx\n")
    with pytest.raises(LocalProtocolError, match="RCPT is not allowed"):
        play.session.check("RCPT")
    with pytest.raises(SMTPServerDisconnected):
        Session(core.Emitter(lambda p: None)).check("EHLO")
    play.finish()


def test_bad_address_raises_before_any_byte_of_the_transaction() -> None:
    play = start("S: 220 mx\nC: EHLO client.example.com\nS: 250 mx\n")
    with pytest.raises(ValueError):
        send(play, ["ok@example.org", "bad\r\nRCPT TO:<x@evil>@example.org"], [b"x"])
    play.finish()


def test_server_closing_mid_transaction_reports_what_was_accepted() -> None:
    play = start("S: 220 mx\nC: EHLO client.example.com\nS: 250 mx\n")
    play.items += [
        ("C:", b"MAIL FROM:<a@example.com>\r\n"),
        ("S:", b"250 ok\r\n"),
        ("C:", b"RCPT TO:<b@example.org>\r\n"),
        ("S:", b"250 ok\r\n"),
        ("C:", b"DATA\r\n"),
        ("S:", b""),
    ]
    with pytest.raises(SMTPServerDisconnected) as info:
        send(play, ["b@example.org"], [b"x"])
    result = info.value.result  # type: ignore[attr-defined]
    assert result.recipients[0].reply.code == 250
    assert result.final is None


# -- replies ---------------------------------------------------------------------


def read_all(data: bytes, **limits: int) -> list[Reply]:
    reader = ReplyReader(**limits)
    reader.feed(data)
    replies = []
    while (reply := reader.next_reply()) is not None:
        replies.append(reply)
    return replies


def test_multiline_reply_and_enhanced_status_code() -> None:
    (reply,) = read_all(b"250-first\r\n250-second\r\n250 2.1.5 last\r\n")
    assert reply.lines == (b"first", b"second", b"2.1.5 last")
    assert reply.enhanced is None  # only the first line's code counts
    (reply,) = read_all(b"550 5.1.1 <x@example.org> unknown\r\n")
    assert reply.enhanced == "5.1.1"
    assert reply.is_permanent and not reply.is_transient
    (reply,) = read_all(b"451 5.1.1 class does not match\r\n")
    assert reply.enhanced is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"25O ok\r\n", "malformed reply line"),
        (b"250-a\r\n251 b\r\n", "code changed"),
        (b"250_a\r\n", "malformed reply line"),
        (b"099 x\r\n", "out of range"),
        (b"250 " + b"x" * 9000 + b"\r\n", "Line too long"),
        (b"250-x\r\n" * 300, "multiline reply too long"),
    ],
)
def test_malformed_or_oversized_replies_raise(data: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        read_all(data)


def test_line_limit_holds_before_the_line_ends() -> None:
    reader = ReplyReader(max_line=100)
    reader.feed(b"250 " + b"x" * 200)
    with pytest.raises(RemoteProtocolError):
        reader.next_reply()


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_reply_bytes_raise_only_remote_protocol_error(
    chunks: list[bytes],
) -> None:
    reader = ReplyReader(max_line=512, max_lines=8, max_size=2048)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (reply := reader.next_reply()) is not None:
                assert 200 <= reply.code <= 599
                assert len(reply.lines) <= 8
    except RemoteProtocolError:
        pass
    assert reader.pending <= 512 + 2048 + sum(map(len, chunks))
