"""ESMTP extensions on the wire: each one used when offered, never when not."""

from __future__ import annotations

import email
import logging
import socket
import threading
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

import smtpc
from smtpc import DSN

GREETING = b"220 mx.example.net ESMTP\r\n"
SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.org"
OK = b"250 2.0.0 ok\r\n"


def ehlo(*keywords: bytes) -> bytes:
    lines = [b"mx.example.net", *keywords]
    body = b"".join(b"250-" + line + b"\r\n" for line in lines[:-1])
    return body + b"250 " + lines[-1] + b"\r\n"


def sent_lines(server: Any) -> list[bytes]:
    return [line.rstrip(b"\r\n") for line in server.lines]


def transaction(scripted_server: Callable[..., Any], *keywords: bytes) -> Any:
    """A server offering ``keywords`` that accepts one message."""
    return scripted_server(
        GREETING, ehlo(*keywords), OK, OK, b"354 go\r\n", OK, b"221 bye\r\n"
    )


def no_transaction(scripted_server: Callable[..., Any], *keywords: bytes) -> Any:
    """A server offering ``keywords`` where the client must not start one."""
    return scripted_server(GREETING, ehlo(*keywords), b"221 bye\r\n")


def send(server: Any, msg: Any = b"Subject: x\r\n\r\nhi\r\n", **kw: Any) -> Any:
    with smtpc.SMTP(server.host, server.port, pipelining=False) as client:
        return client.sendmail(SENDER, [RECIPIENT], msg, **kw)


def test_size_is_declared_only_when_offered(scripted_server: Any) -> None:
    offered = transaction(scripted_server, b"SIZE 1000")
    send(offered)
    assert b"MAIL FROM:<sender@example.com> SIZE=18" in sent_lines(offered)
    plain = transaction(scripted_server, b"HELP")
    send(plain)
    assert b"MAIL FROM:<sender@example.com>" in sent_lines(plain)


def test_message_over_the_size_limit_is_refused_before_mail(
    scripted_server: Any,
) -> None:
    server = no_transaction(scripted_server, b"SIZE 10")
    with pytest.raises(smtpc.SMTPSenderRefused) as info:
        send(server)
    assert info.value.smtp_code == 552
    assert not any(line.startswith(b"MAIL") for line in sent_lines(server))


def test_8bit_content_declares_8bitmime(scripted_server: Any) -> None:
    server = transaction(scripted_server, b"8BITMIME")
    send(server, "Subject: x\r\n\r\nK\u00f6ln\r\n".encode())
    assert b"MAIL FROM:<sender@example.com> BODY=8BITMIME" in sent_lines(server)


def test_8bit_bytes_without_8bitmime_raise_before_the_transaction(
    scripted_server: Any,
) -> None:
    server = no_transaction(scripted_server, b"HELP")
    with pytest.raises(smtpc.SMTPNotSupportedError, match="8BITMIME"):
        send(server, "K\u00f6ln\r\n".encode())
    assert [line.split()[0] for line in sent_lines(server)] == [b"EHLO", b"QUIT"]


def test_8bit_message_is_reencoded_for_a_server_without_8bitmime(
    smtp_server: Callable[..., Any],
) -> None:
    server = smtp_server()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, RECIPIENT, "Gr\u00fc\u00dfe"
    msg.set_content("Gr\u00fc\u00dfe aus K\u00f6ln\n")
    with smtpc.SMTP(server.host, server.port) as client:
        client.ehlo()
        del client.esmtp_features["8bitmime"]
        client.send_message(msg)
    stored = server.envelopes[-1].original_content
    assert stored.isascii()
    back = email.message_from_bytes(stored, policy=email.policy.default)
    assert back["Subject"] == "Gr\u00fc\u00dfe"
    assert back.get_content().splitlines() == ["Gr\u00fc\u00dfe aus K\u00f6ln"]
    assert "BODY=8BITMIME" not in server.envelopes[-1].mail_options


def test_smtputf8_is_added_for_an_international_address(scripted_server: Any) -> None:
    server = transaction(scripted_server, b"SMTPUTF8", b"8BITMIME")
    with smtpc.SMTP(server.host, server.port, pipelining=False) as client:
        client.sendmail("j\u00f6rg@example.com", ["\u00e5sa@example.org"], b"hi\r\n")
    lines = sent_lines(server)
    assert "MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8".encode() in lines
    assert "RCPT TO:<\u00e5sa@example.org>".encode() in lines


def test_international_address_without_smtputf8_sends_no_mail(
    scripted_server: Any,
) -> None:
    server = no_transaction(scripted_server, b"8BITMIME")
    with pytest.raises(smtpc.SMTPNotSupportedError, match="SMTPUTF8"):
        send_to = ["\u00e5sa@example.org"]
        with smtpc.SMTP(server.host, server.port) as client:
            client.sendmail(SENDER, send_to, b"hi\r\n")
    assert not any(line.startswith(b"MAIL") for line in sent_lines(server))


def test_dsn_parameters_go_out_when_offered(scripted_server: Any) -> None:
    server = transaction(scripted_server, b"DSN")
    dsn = DSN(notify=("success", "failure"), ret="hdrs", envid="id+1", orcpt=True)
    send(server, dsn=dsn)
    lines = sent_lines(server)
    assert b"MAIL FROM:<sender@example.com> RET=HDRS ENVID=id+2B1" in lines
    assert (
        b"RCPT TO:<rcpt@example.org> NOTIFY=SUCCESS,FAILURE "
        b"ORCPT=rfc822;rcpt@example.org" in lines
    )


def test_dsn_is_left_out_with_a_warning_when_not_offered(
    scripted_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = transaction(scripted_server, b"HELP")
    with caplog.at_level(logging.WARNING, logger="smtpc.session"):
        send(server, dsn=DSN(notify=("NEVER",)))
    assert b"RCPT TO:<rcpt@example.org>" in sent_lines(server)
    assert "does not offer DSN" in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"notify": ("NEVER", "SUCCESS")},
        {"notify": ("SOMETIMES",)},
        {"ret": "BODY"},
        {"envid": "x" * 101},
    ],
)
def test_dsn_refuses_values_the_rfc_does_not_allow(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DSN(**kwargs)


def test_requiretls_is_refused_without_tls(scripted_server: Any) -> None:
    server = no_transaction(scripted_server, b"REQUIRETLS")
    with pytest.raises(smtpc.SMTPNotSupportedError, match="REQUIRETLS"):
        send(server, requiretls=True)
    assert not any(line.startswith(b"MAIL") for line in sent_lines(server))


def test_requiretls_over_implicit_tls(
    smtp_server: Callable[..., Any], client_tls_context: Any
) -> None:
    server = smtp_server(implicit_tls=True)
    with smtpc.SMTP_SSL(server.host, server.port, context=client_tls_context) as c:
        c.ehlo()
        # aiosmtpd does not offer REQUIRETLS: smtpc must not send the message.
        with pytest.raises(smtpc.SMTPNotSupportedError):
            c.sendmail(SENDER, [RECIPIENT], b"hi\r\n", requiretls=True)
    assert server.envelopes == []


class _PipeliningServer:
    """Answers MAIL, RCPT and DATA only once all three have arrived: a client
    that waits for each reply stalls, one that pipelines goes through."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.group = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            conn.sendall(GREETING)
            conn.recv(1024)
            conn.sendall(ehlo(b"PIPELINING"))
            data = b""
            while data.count(b"\r\n") < 3:
                chunk = conn.recv(1024)
                if not chunk:
                    return
                data += chunk
            self.group = data
            conn.sendall(OK + OK + b"354 go\r\n")
            while not data.endswith(b"\r\n.\r\n"):
                data += conn.recv(1024)
            conn.sendall(OK)
            conn.recv(1024)
            conn.sendall(b"221 bye\r\n")

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


def test_pipelining_sends_mail_rcpt_and_data_before_any_reply() -> None:
    server = _PipeliningServer()
    try:
        with smtpc.SMTP("127.0.0.1", server.port, timeout=3) as client:
            assert client.sendmail(SENDER, [RECIPIENT], b"hi\r\n") == {}
    finally:
        server.close()
    assert server.group == (
        b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n"
    )


def test_deliver_many_pipelines_each_message_behind_the_last(
    smtp_sink: Any,
) -> None:
    messages = [
        (SENDER, [f"r{i}@example.org"], b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        for i in range(5)
    ]
    with smtpc.SMTP(smtp_sink.host, smtp_sink.port) as client:
        client.ehlo()
        assert client.has_extn("pipelining")
        results = client.deliver_many(messages)
    assert [r.delivered for r in results] == [True] * 5
    assert [r.recipients[0].address for r in results] == [
        f"r{i}@example.org" for i in range(5)
    ]
    stored = smtp_sink.messages(5)
    assert sorted(m.content for m in stored) == [m[2] for m in messages]


def test_deliver_many_reports_each_refusal_in_order(smtpd: Any) -> None:
    messages = [
        (SENDER, ["a@example.org"], b"one\r\n"),
        (SENDER, ["refuse@example.org"], b"two\r\n"),
        (SENDER, ["b@example.org", "defer@example.org"], b"three\r\n"),
    ]
    with smtpc.SMTP(smtpd.host, smtpd.port) as client:
        results = client.deliver_many(messages)
    assert [r.delivered for r in results] == [True, False, True]
    assert results[1].refused["refuse@example.org"][0] == 550
    assert list(results[2].refused) == ["defer@example.org"]
    assert results[2].refused["defer@example.org"][0] == 451
    assert [e.original_content for e in smtpd.envelopes] == [b"one\r\n", b"three\r\n"]


def test_size_of_a_file_is_its_length(scripted_server: Any, tmp_path: Any) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: x\r\n\r\n" + b"y" * 70_000 + b"\r\n")
    server = transaction(scripted_server, b"SIZE 1000000")
    with open(path, "rb") as file:
        send(server, file)
    assert f"MAIL FROM:<sender@example.com> SIZE={70_016}".encode() in sent_lines(
        server
    )


def _batch(count: int) -> list[tuple[str, list[str], bytes]]:
    return [(SENDER, [f"r{i}@example.org"], b"m%d\r\n" % i) for i in range(count)]


def test_deliver_many_raises_when_a_421_ends_the_batch(scripted_server: Any) -> None:
    server = scripted_server(
        GREETING,
        ehlo(b"HELP"),
        OK,
        OK,
        b"354 go\r\n",
        OK,  # the first message
        OK,
        OK,
        b"354 go\r\n",
        b"421 4.3.2 closing\r\n",  # the second
    )
    client = smtpc.SMTP(server.host, server.port)
    with pytest.raises(smtpc.SMTPServerDisconnected, match="after 2 messages"):
        client.deliver_many(_batch(5))
    assert [r.delivered for r in client.last_results] == [True, False]
    assert client.last_results[1].final.code == 421
    assert client.sock is None


def test_deliver_many_reports_a_message_accepted_before_the_session_ends(
    scripted_server: Any,
) -> None:
    server = scripted_server(
        GREETING,
        ehlo(b"PIPELINING"),
        OK,
        OK,
        b"354 go\r\n",  # the first group
        OK,  # the first message's final reply, read behind the second group
        OK,
        b"421 4.3.2 closing\r\n",  # the second MAIL and RCPT
    )
    client = smtpc.SMTP(server.host, server.port)
    with pytest.raises(smtpc.SMTPServerDisconnected):
        client.deliver_many(_batch(3))
    first, second = client.last_results
    assert first.delivered and first.final.code == 250
    assert second.recipients[0].reply.code == 421
    assert not second.delivered
