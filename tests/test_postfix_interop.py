"""smtpc against real Postfix on loopback: a private smtpd instance and smtp-sink.

Every message carries a unique token in its Message-ID, so a test finds its own
delivery in the instance's maildirs, which all tests share. What arrives is
compared with what was sent, after removing the header fields Postfix prepends.
The transcript of each session comes from the ``smtpc.wire`` log.
"""

from __future__ import annotations

import email.policy
import logging
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from postfix import POSTFIX_SIZE_LIMIT, PostfixServer, original_content
from servers import SinkServer

import smtpc

pytestmark = pytest.mark.postfix

SENDER = "sender@example.test"
CLIENT_NAME = "client.example.test"
MEGABYTE = 1024 * 1024


@pytest.fixture
def wire(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Record every command and reply line of the sessions in the test."""
    with caplog.at_level(logging.DEBUG, logger="smtpc.wire"):
        yield caplog


def transcript(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Lines sent (``"> MAIL ..."``) and received (``"< 250 ..."``), in order."""
    return [r.getMessage() for r in caplog.records if r.name == "smtpc.wire"]


def transaction(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The transcript from the last MAIL command on."""
    lines = transcript(caplog)
    start = max(i for i, line in enumerate(lines) if line.startswith("> MAIL "))
    return lines[start:]


def sent_verbs(lines: list[str]) -> list[str]:
    return [line[2:].split(" ", 1)[0] for line in lines if line.startswith("> ")]


def new_token() -> str:
    return uuid.uuid4().hex


def message(token: str, body: bytes, to: str = "alice@example.test") -> bytes:
    """A message whose Message-ID carries ``token``, with CRLF header lines."""
    header = (
        f"From: Sender <{SENDER}>\r\n"
        f"To: {to}\r\n"
        "Subject: smtpc interoperability\r\n"
        f"Message-ID: <{token}@{CLIENT_NAME}>\r\n"
        "\r\n"
    )
    return header.encode() + body


def connect(
    server: PostfixServer | SinkServer,
    port: int | None = None,
    *,
    pipelining: bool = True,
    chunking: bool = True,
) -> smtpc.SMTP:
    """A client session with ``server``, on its main port unless told."""
    return smtpc.SMTP(
        server.host,
        port or server.port,
        local_hostname=CLIENT_NAME,
        timeout=30,
        pipelining=pipelining,
        chunking=chunking,
    )


def header_block(delivered: bytes) -> bytes:
    """The header section as delivered, trace fields included, LF endings."""
    return delivered.partition(b"\n\n")[0]


# --- the private Postfix instance ---------------------------------------------


def test_plain_delivery_and_queue_id(postfix_server: PostfixServer) -> None:
    token = new_token()
    sent = message(token, b"Hello from smtpc.\r\n")
    with connect(postfix_server) as client:
        refused = client.sendmail(SENDER, ["alice@example.test"], sent)
        result = client.last_result
    assert refused == {}
    assert result is not None and result.final is not None
    assert result.final.code == 250
    assert result.queue_id is not None
    delivered = postfix_server.wait_for_message("alice", token)
    assert original_content(delivered) == sent
    trace = header_block(delivered)
    assert f"id {result.queue_id}".encode() in trace
    assert b"Return-Path: <sender@example.test>" in trace
    assert f"{result.queue_id}: from=<{SENDER}>" in postfix_server.log()


# Lines that dot-stuffing (DATA) or its absence (BDAT) must get right, and line
# endings a careless client would send bare.
ODD_BODY = (
    b".leading dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"bare LF\n"
    b".after bare LF\n"
    b"bare CR\r"
    b".after bare CR\r"
    b"CRLF\r\n"
    b"\r\n"
    b". \r\n"
    b"last line without a line ending"
)
ODD_BODY_CRLF = (
    b".leading dot\r\n"
    b"..two dots\r\n"
    b".\r\n"
    b"bare LF\r\n"
    b".after bare LF\r\n"
    b"bare CR\r\n"
    b".after bare CR\r\n"
    b"CRLF\r\n"
    b"\r\n"
    b". \r\n"
    b"last line without a line ending\r\n"
)


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_leading_dots_and_bare_line_endings_arrive_as_sent(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture, chunking: bool
) -> None:
    token = new_token()
    with connect(postfix_server, chunking=chunking) as client:
        assert (
            client.sendmail(SENDER, "bob@example.test", message(token, ODD_BODY)) == {}
        )
    assert ("BDAT" if chunking else "DATA") in sent_verbs(transaction(wire))
    delivered = postfix_server.wait_for_message("bob", token)
    assert original_content(delivered) == message(token, ODD_BODY_CRLF)


UTF8_MESSAGE = (
    "From: Sender <sender@example.test>\r\n"
    "To: José <jösé@example.test>\r\n"
    "Subject: Grüße aus Köln ✓\r\n"
    "Message-ID: <{token}@client.example.test>\r\n"
    "\r\n"
    "Ünïcödé body: ✉ 😀\r\n"
)


def test_smtputf8_negotiated_and_delivered(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    sent = UTF8_MESSAGE.format(token=token).encode()
    with connect(postfix_server) as client:
        client.ehlo()
        assert client.has_extn("smtputf8")
        refused = client.sendmail(SENDER, ["jösé@example.test"], sent)
    assert refused == {}
    mail, rcpt = transaction(wire)[:2]
    assert mail.startswith("> MAIL FROM:<sender@example.test>")
    assert "SMTPUTF8" in mail.split()
    assert "BODY=8BITMIME" in mail.split()
    assert rcpt == "> RCPT TO:<jösé@example.test>"
    delivered = postfix_server.wait_for_message("jösé", token)
    assert original_content(delivered) == sent
    # Postfix names the protocol UTF8SMTP when the client asked for SMTPUTF8.
    assert b"with UTF8SMTP id" in header_block(delivered)
    assert "Delivered-To: jösé@example.test".encode() in header_block(delivered)


def test_send_message_with_a_utf8_address(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = SENDER
    msg["To"] = "José <jösé@example.test>"
    msg["Cc"] = "alice@example.test"
    msg["Subject"] = "Grüße"
    msg["Message-ID"] = f"<{token}@{CLIENT_NAME}>"
    msg.set_content("Ünïcödé ✉\n", cte="8bit")
    with connect(postfix_server) as client:
        assert client.send_message(msg) == {}
    assert "SMTPUTF8" in transaction(wire)[0].split()
    for mailbox in ("jösé", "alice"):
        delivered = postfix_server.wait_for_message(mailbox, token)
        received = BytesParser(policy=email.policy.SMTPUTF8).parsebytes(delivered)
        assert received["To"] == "José <jösé@example.test>"
        assert received["Subject"] == "Grüße"
        assert received.get_content() == "Ünïcödé ✉\n"


def test_8bitmime_declared_for_8bit_content(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    body = "Latin-1 café and UTF-8 naïve façade\r\n".encode() + bytes([0xE9]) + b"\r\n"
    sent = message(token, b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
    with connect(postfix_server) as client:
        assert client.sendmail(SENDER, ["carol@example.test"], sent) == {}
    mail = transaction(wire)[0].split()
    assert "BODY=8BITMIME" in mail
    assert "SMTPUTF8" not in mail
    delivered = postfix_server.wait_for_message("carol", token)
    assert original_content(delivered) == sent


def test_7bit_content_declares_no_body_type(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    sent = message(token, b"Plain ASCII.\r\n")
    with connect(postfix_server) as client:
        assert client.sendmail(SENDER, ["carol@example.test"], sent) == {}
    mail = transaction(wire)[0].split()
    assert f"SIZE={len(sent)}" in mail
    assert not any(p.startswith("BODY=") for p in mail)
    postfix_server.wait_for_message("carol", token)


@pytest.mark.parametrize("kind", ["bytes", "file"])
def test_message_over_the_size_limit_is_refused_before_mail(
    postfix_server: PostfixServer,
    wire: pytest.LogCaptureFixture,
    tmp_path: Path,
    kind: str,
) -> None:
    token = new_token()
    line = b"x" * 998 + b"\r\n"
    big = message(token, line * (POSTFIX_SIZE_LIMIT // len(line) + 1))
    assert len(big) > POSTFIX_SIZE_LIMIT
    path = tmp_path / "big.eml"
    path.write_bytes(big)
    with connect(postfix_server) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == str(POSTFIX_SIZE_LIMIT)
        with path.open("rb") as file, pytest.raises(smtpc.SMTPSenderRefused) as info:
            client.sendmail(
                SENDER, ["alice@example.test"], big if kind == "bytes" else file
            )
        assert info.value.smtp_code == 552
        assert b"5.3.4" in info.value.smtp_error
        assert info.value.sender == SENDER
        # Nothing of the transaction went on the wire.
        assert not {"MAIL", "RCPT", "DATA", "BDAT"} & set(sent_verbs(transcript(wire)))
        # The session is still usable.
        small_token = new_token()
        small = message(small_token, b"small\r\n")
        assert client.sendmail(SENDER, ["alice@example.test"], small) == {}
    postfix_server.wait_for_message("alice", small_token)
    assert postfix_server.messages("alice", token) == []


def test_size_declared_counts_the_crlf_sent_for_bare_lf(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    sent = message(token, b"one\ntwo\nthree\n")
    on_the_wire = len(sent) + sent.count(b"\n") - sent.count(b"\r\n")
    with connect(postfix_server) as client:
        assert client.sendmail(SENDER, ["carol@example.test"], sent) == {}
    assert f"SIZE={on_the_wire}" in transaction(wire)[0].split()


def test_bare_lf_message_over_the_limit_after_crlf_is_refused_before_mail(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    line = b"z" * 98 + b"\n"
    big = message(new_token(), line * (POSTFIX_SIZE_LIMIT // 100 + 10))
    assert len(big) < POSTFIX_SIZE_LIMIT < len(big.replace(b"\n", b"\r\n"))
    with connect(postfix_server) as client:
        with pytest.raises(smtpc.SMTPSenderRefused) as info:
            client.sendmail(SENDER, ["alice@example.test"], big)
        assert info.value.smtp_code == 552
    assert "MAIL" not in sent_verbs(transcript(wire))


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_stream_over_the_size_limit_is_refused_by_postfix(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture, chunking: bool
) -> None:
    token = new_token()
    line = b"y" * 998 + b"\r\n"
    # An iterable has no size known up front, so only the server can refuse it.
    chunks = [message(token, b"")] + [line * 64] * 4
    with connect(postfix_server, chunking=chunking) as client:
        result = client.deliver(SENDER, ["alice@example.test"], chunks)
        assert result.final is not None
        assert result.final.code == 552
        assert result.final.enhanced == "5.3.4"
        assert not result.delivered
        assert result.accepted == []
        again = new_token()
        assert (
            client.sendmail(SENDER, ["alice@example.test"], message(again, b"")) == {}
        )
    mails = [line for line in transcript(wire) if line.startswith("> MAIL ")]
    assert not any(p.startswith("SIZE=") for p in mails[0].split())
    postfix_server.wait_for_message("alice", again)
    assert postfix_server.messages("alice", token) == []


def test_dsn_parameters_accepted_and_success_notice_returned(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    sent = message(token, b"Tell me when it is delivered.\r\n")
    with connect(postfix_server) as client:
        client.ehlo()
        assert client.has_extn("dsn")
        result = client.deliver(
            SENDER,
            ["alice@example.test"],
            sent,
            mail_options=["RET=HDRS", "ENVID=abc"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE"],
        )
    assert result.mail is not None and result.mail.code == 250
    assert [r.reply.code for r in result.recipients if r.reply] == [250]
    assert result.accepted == ["alice@example.test"]
    mail, rcpt = transaction(wire)[:2]
    assert {"RET=HDRS", "ENVID=abc"} <= set(mail.split())
    assert rcpt.split()[-1] == "NOTIFY=SUCCESS,FAILURE"
    assert original_content(postfix_server.wait_for_message("alice", token)) == sent
    # Postfix confirms the delivery to the reverse-path, as NOTIFY=SUCCESS asked,
    # with the ENVID and, for RET=HDRS, the headers only.
    notice = postfix_server.wait_for_message("sender", token)
    assert b"Original-Envelope-Id: abc" in notice
    assert b"Action: delivered" in notice
    assert b"Final-Recipient: rfc822; alice@example.test" in notice
    assert b"text/rfc822-headers" in notice
    assert b"Tell me when it is delivered." not in notice


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
def test_refused_recipient_reported_while_the_others_get_the_message(
    postfix_server: PostfixServer, pipelining: bool
) -> None:
    tokens = new_token(), new_token()
    sent = [message(token, b"Two of three.\r\n") for token in tokens]
    recipients = ["alice@example.test", "nosuchuser@example.test", "bob@example.test"]
    with connect(postfix_server, pipelining=pipelining) as client:
        result = client.deliver(SENDER, recipients, sent[0])
        refused = client.sendmail(SENDER, recipients, sent[1])
    assert result.accepted == ["alice@example.test", "bob@example.test"]
    assert list(result.refused) == ["nosuchuser@example.test"]
    reply = result.recipients[1].reply
    assert reply is not None
    assert (reply.code, reply.enhanced) == (550, "5.1.1")
    assert b"User unknown in virtual mailbox table" in reply.message
    assert result.final is not None and result.final.code == 250
    assert list(refused) == ["nosuchuser@example.test"]
    assert refused["nosuchuser@example.test"][0] == 550
    assert refused["nosuchuser@example.test"][1].startswith(b"5.1.1 ")
    for token, content in zip(tokens, sent, strict=True):
        for mailbox in ("alice", "bob"):
            delivered = postfix_server.wait_for_message(mailbox, token)
            assert original_content(delivered) == content


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_every_recipient_refused_raises_recipients_refused(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture, chunking: bool
) -> None:
    with connect(postfix_server, chunking=chunking) as client:
        with pytest.raises(smtpc.SMTPRecipientsRefused) as info:
            client.sendmail(SENDER, ["nobody1@example.test"], message(new_token(), b""))
        assert client.noop()[0] == 250
    assert info.value.recipients["nobody1@example.test"][0] == 550
    # The transaction was reset. With BDAT the small content went with the
    # envelope (one round trip) and the server refused it; with DATA no
    # content was sent.
    lines = transaction(wire)
    verbs = [verb.upper() for verb in sent_verbs(lines)]
    if chunking:
        assert verbs == ["MAIL", "RCPT", "BDAT", "RSET", "NOOP", "QUIT"]
        bdat_reply = lines[
            lines.index(next(x for x in lines if x.startswith("> BDAT"))) + 3
        ]
        assert bdat_reply.startswith("< 5")
    else:
        assert "BDAT" not in verbs
    assert verbs[-3:] == ["RSET", "NOOP", "QUIT"]
    if not chunking:
        # RFC 2920 §3.1: the pipelined DATA meets a server with no recipient.
        data_reply = lines[lines.index("> DATA") + 3]
        assert data_reply.startswith("< 554 5.5.1")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
def test_pipelining_groups_the_commands(
    postfix_server: PostfixServer,
    wire: pytest.LogCaptureFixture,
    pipelining: bool,
    chunking: bool,
) -> None:
    token = new_token()
    sent = message(token, b"Grouped or not.\r\n")
    recipients = ["alice@example.test", "bob@example.test", "carol@example.test"]
    with connect(postfix_server, pipelining=pipelining, chunking=chunking) as client:
        assert client.sendmail(SENDER, recipients, sent) == {}
    lines = transaction(wire)
    first_reply = next(i for i, line in enumerate(lines) if line.startswith("< "))
    if pipelining:
        # RFC 2920 §3.1: MAIL, every RCPT and DATA go out before the first
        # reply is read; a small message in one chunk goes in the same group
        # as BDAT LAST (RFC 3030 §4.2), one round trip in all.
        group = ["MAIL", "RCPT", "RCPT", "RCPT"] + (["BDAT"] if chunking else ["DATA"])
        assert sent_verbs(lines[:first_reply]) == group
    else:
        assert sent_verbs(lines[:first_reply]) == ["MAIL"]
        assert [line[:5] for line in lines[:8]] == ["> MAI", "< 250"] + [
            "> RCP",
            "< 250",
        ] * 3
    for mailbox in ("alice", "bob", "carol"):
        delivered = postfix_server.wait_for_message(mailbox, token)
        assert original_content(delivered) == sent
    assert "improper command pipelining" not in postfix_server.log()


def big_message(token: str, size: int) -> bytes:
    """About ``size`` octets of varied lines, some of them starting with a dot."""
    lines = [
        b"%s%07d %s\r\n" % (b"." * (n % 3), n, b"abcdefghij" * (n % 9))
        for n in range(size // 50)
    ]
    return message(token, b"".join(lines))


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
def test_chunking_with_postfix_several_megabytes_from_a_file(
    postfix_server: PostfixServer,
    wire: pytest.LogCaptureFixture,
    tmp_path: Path,
    pipelining: bool,
) -> None:
    token = new_token()
    sent = big_message(token, 3 * MEGABYTE)
    path = tmp_path / "big.eml"
    path.write_bytes(sent)
    port = postfix_server.large_port
    with connect(postfix_server, port, pipelining=pipelining) as client:
        client.ehlo()
        assert client.has_extn("chunking")
        with path.open("rb") as file:
            assert client.sendmail(SENDER, ["alice@example.test"], file) == {}
    lines = transaction(wire)
    bdat = [line for line in lines if line.startswith("> BDAT ")]
    assert len(bdat) > 10
    assert bdat[-1] == "> BDAT 0 LAST"
    assert sum(int(line.split()[2]) for line in bdat) == len(sent)
    assert "DATA" not in sent_verbs(lines)
    assert f"SIZE={len(sent)}" in lines[0].split()
    delivered = postfix_server.wait_for_message("alice", token, timeout=30)
    assert original_content(delivered) == sent


def test_chunking_single_chunk_is_bdat_last(
    postfix_server: PostfixServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    sent = message(token, b".one chunk\r\n")
    with connect(postfix_server) as client:
        assert client.sendmail(SENDER, ["carol@example.test"], sent) == {}
    bdat = [line for line in transaction(wire) if line.startswith("> BDAT ")]
    assert bdat == [f"> BDAT {len(sent)} LAST"]
    delivered = postfix_server.wait_for_message("carol", token)
    assert original_content(delivered) == sent


# --- smtp-sink ------------------------------------------------------------------


def test_smtp_sink_pipelining_small_message(
    smtp_sink: SinkServer, wire: pytest.LogCaptureFixture
) -> None:
    token = new_token()
    sent = message(token, ODD_BODY)
    recipients = ["one@example.net", "two@example.net"]
    with connect(smtp_sink) as client:
        client.ehlo()
        assert client.has_extn("pipelining")
        # smtp-sink offers no CHUNKING, so the content goes with DATA.
        assert not client.has_extn("chunking")
        assert client.sendmail(SENDER, recipients, sent) == {}
    lines = transaction(wire)
    first_reply = next(i for i, line in enumerate(lines) if line.startswith("< "))
    assert sent_verbs(lines[:first_reply]) == ["MAIL", "RCPT", "RCPT", "DATA"]
    [stored] = smtp_sink.messages(1)
    assert stored.mail_args == f"<{SENDER}>"
    assert stored.rcpt_args == [f"<{r}>" for r in recipients]
    assert stored.content == message(token, ODD_BODY_CRLF)


def test_smtp_sink_pipelining_several_megabytes_from_a_file(
    smtp_sink: SinkServer, wire: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    sent = big_message(new_token(), 4 * MEGABYTE)
    small = message(new_token(), b"Second transaction.\r\n")
    path = tmp_path / "big.eml"
    path.write_bytes(sent)
    with connect(smtp_sink) as client, path.open("rb") as file:
        assert client.sendmail(SENDER, ["one@example.net"], file) == {}
        assert client.sendmail(SENDER, ["two@example.net"], small) == {}
    # Dump files are told apart by recipient: their times may be equal.
    stored = {m.rcpt_args[0]: m.content for m in smtp_sink.messages(2, timeout=30)}
    assert stored == {"<one@example.net>": sent, "<two@example.net>": small}
    assert sent_verbs(transcript(wire)).count("DATA") == 2
