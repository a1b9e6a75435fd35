"""``smtpc send`` against a loopback server: envelope, Bcc, input, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smtpc import cli

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = (
    b"From: Ann <ann@example.com>\r\nTo: bob@example.org\r\n"
    b"Cc: carol@example.org\r\nBcc: hidden@example.net,\r\n  also@example.net\r\n"
    b"Subject: hello\r\n\r\nbody\r\n"
)
SHOWN = MESSAGE.replace(b"Bcc: hidden@example.net,\r\n  also@example.net\r\n", b"")


def test_send_takes_the_envelope_from_the_headers_and_drops_bcc(
    smtpd: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(MESSAGE)
    status = cli.main(["send", "--server", f"{smtpd.host}:{smtpd.port}", str(path)])
    assert status == 0
    (envelope,) = smtpd.envelopes
    assert envelope.mail_from == "ann@example.com"
    assert sorted(envelope.rcpt_tos) == [
        "also@example.net",
        "bob@example.org",
        "carol@example.org",
        "hidden@example.net",
    ]
    assert envelope.original_content == SHOWN
    assert f"SIZE={len(SHOWN)}" in envelope.mail_options
    assert "hidden@example.net: accepted" in capsys.readouterr().out


def test_send_takes_a_resent_message_envelope_from_its_resent_fields(
    smtpd: Any, tmp_path: Path
) -> None:
    resent = (
        b"Resent-Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n"
        b"Resent-From: dan@example.com\r\nResent-To: erin@example.org\r\n"
        b"Resent-Bcc: frank@example.net\r\n"
    )
    path = tmp_path / "m.eml"
    path.write_bytes(resent + MESSAGE)
    status = cli.main(["send", "--server", f"{smtpd.host}:{smtpd.port}", str(path)])
    assert status == 0
    (envelope,) = smtpd.envelopes
    assert envelope.mail_from == "dan@example.com"
    assert sorted(envelope.rcpt_tos) == ["erin@example.org", "frank@example.net"]
    # Neither Bcc field is sent.
    assert b"Bcc" not in envelope.original_content


def test_send_refuses_two_resent_blocks(smtpd: Any, tmp_path: Path) -> None:
    block = (
        b"Resent-Date: Fri, 4 Dec 2026 10:00:00 +0000\r\nResent-To: e@example.org\r\n"
    )
    good, bad = tmp_path / "good.eml", tmp_path / "bad.eml"
    good.write_bytes(MESSAGE)
    bad.write_bytes(block + block + MESSAGE)
    server = f"{smtpd.host}:{smtpd.port}"
    # The bad message stops the run before the good one before it is sent.
    assert cli.main(["send", "--server", server, str(good), str(bad)]) == 2
    assert smtpd.envelopes == []


def test_send_reads_a_piped_message_with_its_headers(smtpd: Any) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smtpc",
            "send",
            "--server",
            f"{smtpd.host}:{smtpd.port}",
            "-",
        ],
        input=MESSAGE,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (envelope,) = smtpd.envelopes
    assert envelope.original_content == SHOWN
    assert "bob@example.org" in envelope.rcpt_tos


def test_a_refused_recipient_makes_the_exit_status_1(
    smtpd: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    status = cli.main(
        [
            "send",
            "--server",
            f"{smtpd.host}:{smtpd.port}",
            "--from",
            "a@example.com",
            "--to",
            "ok@example.org",
            "--to",
            "refuse@example.org",
            "--to",
            "defer@example.org",
            str(path),
        ]
    )
    assert status == 1
    out = capsys.readouterr().out
    assert "refuse@example.org: REFUSED (550" in out
    # A temporary failure reads as one.
    assert "defer@example.org: DEFERRED (451" in out
    assert "ok@example.org: accepted" in out


def test_errors_read_as_sentences() -> None:
    import smtpc

    refused = smtpc.SMTPRecipientsRefused({"a@example.org": (550, b"5.1.1 no")})
    assert cli.describe(refused) == "every recipient was refused: a@example.org (550)"
    error = smtpc.SMTPAuthenticationError(535, b"5.7.8 bad\ncredentials")
    assert cli.describe(error) == "SMTPAuthenticationError: 535 5.7.8 bad credentials"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail.example.net", ("mail.example.net", 25)),
        ("mail.example.net:587", ("mail.example.net", 587)),
        ("[::1]", ("::1", 25)),
        ("[::1]:2525", ("::1", 2525)),
        ("::1", ("::1", 25)),
    ],
)
def test_split_server(text: str, expected: tuple[str, int]) -> None:
    assert cli.split_server(text, 25) == expected


@pytest.mark.parametrize("text", ["host:abc", "host:0", "[::1]:99999"])
def test_split_server_refuses_bad_ports(text: str) -> None:
    with pytest.raises(ValueError, match="port must be a number"):
        cli.split_server(text, 25)


def test_no_password_and_no_terminal_is_a_usage_error(smtp_server: Any) -> None:
    server = smtp_server(auth=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SMTP_PASSWORD", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "smtpc",
            "send",
            "--server",
            f"{server.host}:{server.port}",
            "--user",
            "me",
            "--from",
            "a@example.com",
            "--to",
            "b@example.org",
            "-",
        ],
        input=b"Subject: x\r\n\r\nbody\r\n",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
        start_new_session=True,
    )
    assert done.returncode == 2
    assert b"no password" in done.stderr
    assert b"Traceback" not in done.stderr


def test_every_bcc_field_names_recipients(smtpd: Any, tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(
        b"From: a@example.com\r\nTo: b@example.org\r\nBcc: c@example.org\r\n"
        b"Subject: x\r\nBcc: d@example.org\r\n\r\nbody\r\n"
    )
    assert cli.main(["send", "--server", f"{smtpd.host}:{smtpd.port}", str(path)]) == 0
    (envelope,) = smtpd.envelopes
    assert sorted(envelope.rcpt_tos) == [
        "b@example.org",
        "c@example.org",
        "d@example.org",
    ]
    assert b"Bcc" not in envelope.original_content
