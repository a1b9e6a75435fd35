"""``smtpc bulk`` against aiosmtpd on loopback: sources, the report, and
resuming after an interruption without sending anything twice."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from servers import RecordingHandler, SMTPServer, TLSRecordingHandler
from test_routing import (
    MX_CERT_NAMES,
    DNSServer,
    Hosts,
    _broken_tls_context,
    _port_free_everywhere,
)

from smtpc import cli

SENDER = "sender@example.com"
MAIN = Path(__file__).resolve().parents[1]


def message(i: int, to: str = "rcpt@example.org") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {to}, refuse@example.org\r\n"
        f"Message-ID: <m{i}@example.com>\r\nSubject: {i}\r\n\r\n"
        f"From the body of {i}\r\n.dot\r\n"
    ).encode()


@dataclass
class SlowHandler(RecordingHandler):
    """Accepts each message content after ``delay`` seconds; after ``stop_after``
    messages it answers 421 to every MAIL (a server going down)."""

    delay: float = 0.0
    stop_after: int | None = None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, *a: Any
    ) -> str:
        if self.stop_after is not None and len(self.envelopes) >= self.stop_after:
            return "421 4.3.2 Shutting down"
        return await super().handle_MAIL(server, session, envelope, *a)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def deliveries(server: SMTPServer) -> collections.Counter[tuple[str, str]]:
    return collections.Counter(
        (e.original_content.split(b"Subject: ")[1].split(b"\r\n")[0].decode(), rcpt)
        for e in server.envelopes
        for rcpt in e.rcpt_tos
    )


def report_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "partial last line"
    return [json.loads(line) for line in text.splitlines()]


def outcomes(lines: list[dict[str, Any]]) -> collections.Counter[tuple[str, str, str]]:
    return collections.Counter(
        (line["id"], r["to"], r["outcome"])
        for line in lines
        for r in line["recipients"]
    )


def bulk(server: SMTPServer, *args: str) -> int:
    common = ["bulk", "--server", f"{server.host}:{server.port}", "--progress", "none"]
    return cli.main([*common, "--backoff", "0.01", "--timeout", "5", *args])


def test_eml_directory(smtpd: SMTPServer, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    for i in range(6):
        (outbox / f"{i}.eml").write_bytes(message(i))
    report = tmp_path / "report.jsonl"

    assert bulk(smtpd, "--report", str(report), str(outbox)) == 1
    lines = report_lines(report)
    assert len(lines) == 6
    assert outcomes(lines) == collections.Counter(
        {(f"{i}.eml", "rcpt@example.org", "delivered") for i in range(6)}
        | {(f"{i}.eml", "refuse@example.org", "refused") for i in range(6)}
    )
    refused = next(r for r in lines[0]["recipients"] if r["outcome"] == "refused")
    assert (refused["code"], refused["enhanced"]) == (550, "5.1.1")
    assert sorted(deliveries(smtpd).values()) == [1] * 6
    assert smtpd.envelopes[0].original_content == message(0) or any(
        e.original_content in {message(i) for i in range(6)} for e in smtpd.envelopes
    )


def test_mbox(smtpd: SMTPServer, tmp_path: Path) -> None:
    mbox = tmp_path / "mail.mbox"
    with mbox.open("wb") as file:
        for i in range(3):
            body = (
                message(i)
                .replace(b"\r\n", b"\n")
                .replace(b"\nFrom the", b"\n>From the")
            )
            file.write(
                b"From sender@example.com Mon Jan  1 00:00:00 2024\n" + body + b"\n"
            )
    report = tmp_path / "report.jsonl"

    assert bulk(smtpd, "--report", str(report), "--to", "a@example.org", str(mbox)) == 0
    assert {line["id"] for line in report_lines(report)} == {"1", "2", "3"}
    contents = sorted(e.original_content for e in smtpd.envelopes)
    assert contents == sorted(message(i) for i in range(3))


def test_jsonl_job_file(smtpd: SMTPServer, tmp_path: Path) -> None:
    (tmp_path / "one.eml").write_bytes(message(1))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps(
            {"id": "a", "from": SENDER, "to": ["x@example.org"], "file": "one.eml"}
        )
        + "\n\n"
        + json.dumps(
            {
                "from": SENDER,
                "to": "y@example.org",
                "content": "Subject: 2\r\n\r\nhi\r\n",
            }
        )
        + "\n"
    )
    report = tmp_path / "report.jsonl"

    assert bulk(smtpd, "--report", str(report), str(jobs)) == 0
    assert outcomes(report_lines(report)) == collections.Counter(
        {("a", "x@example.org", "delivered"), ("line 3", "y@example.org", "delivered")}
    )
    assert deliveries(smtpd) == collections.Counter(
        {("1", "x@example.org"): 1, ("2", "y@example.org"): 1}
    )


@pytest.mark.parametrize(
    "bad_line",
    ['{"from": "a@example.com"}', "not json", '{"from": "a@example.com", "to": []}'],
    ids=["no-to", "not-json", "empty-to"],
)
def test_bad_job_file_is_a_usage_error_before_anything_is_sent(
    tmp_path: Path, smtpd: SMTPServer, bad_line: str
) -> None:
    good = json.dumps({"from": SENDER, "to": "y@example.org", "content": "x\r\n"})
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(f"{good}\n{good}\n{bad_line}\n")
    assert bulk(smtpd, "--report", str(tmp_path / "r.jsonl"), str(jobs)) == 2
    assert smtpd.envelopes == []


def test_a_repeated_id_is_refused_before_anything_is_sent(
    tmp_path: Path, smtpd: SMTPServer, capsys: Any
) -> None:
    # The report and --resume know a message by its id: two messages with
    # one id could not be told apart.
    lines = [
        json.dumps({"id": i, "from": SENDER, "to": "y@example.org", "content": "x\r\n"})
        for i in ("a", "b", *(str(n) for n in range(50)), "a")
    ]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    assert bulk(smtpd, "--report", str(tmp_path / "r.jsonl"), str(jobs)) == 2
    assert "id 'a' is used twice" in capsys.readouterr().err
    assert smtpd.envelopes == []


def test_plain_progress_line(smtpd: SMTPServer, tmp_path: Path, capsys: Any) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps({"from": SENDER, "to": "y@example.org", "content": "x\r\n"}) + "\n"
    )
    args = ["--progress", "plain", "--report", str(tmp_path / "r.jsonl"), str(jobs)]
    assert bulk(smtpd, *args) == 0
    err = capsys.readouterr().err
    assert "1 messages" in err and "msg/s" in err and "delivered 1" in err


def job_file(tmp_path: Path, count: int) -> Path:
    jobs = tmp_path / "jobs.jsonl"
    with jobs.open("w") as file:
        for i in range(count):
            to = [f"a{i}@example.org", f"b{i}@example.org"]
            content = f"Subject: {i}\r\n\r\nmessage {i}\r\n"
            file.write(
                json.dumps({"id": str(i), "from": SENDER, "to": to, "content": content})
                + "\n"
            )
    return jobs


def expected(count: int) -> set[tuple[str, str]]:
    return {(str(i), f"{p}{i}@example.org") for i in range(count) for p in "ab"}


def test_resume_after_the_server_stops(
    smtp_server: Callable[..., SMTPServer], tmp_path: Path
) -> None:
    handler = SlowHandler(stop_after=7)
    server = smtp_server(handler=handler)
    jobs = job_file(tmp_path, 20)
    report = tmp_path / "report.jsonl"

    assert bulk(server, "--attempts", "2", "--report", str(report), str(jobs)) == 1
    first = outcomes(report_lines(report))
    sent = len(server.envelopes)
    assert 7 <= sent < 20
    assert sum(1 for (_, _, o) in first if o == "delivered") == 2 * sent
    assert sum(first.values()) == 40

    handler.stop_after = None
    assert bulk(server, "--resume", str(report), str(jobs)) == 0
    delivered = deliveries(server)
    assert set(delivered) == expected(20)
    assert set(delivered.values()) == {1}
    lines = report_lines(report)
    assert len(lines) == 20 + (20 - sent)
    final = {(i, to) for (i, to, o) in outcomes(lines) if o == "delivered"}
    assert final == expected(20)


def test_resume_after_sigint(
    smtp_server: Callable[..., SMTPServer], tmp_path: Path
) -> None:
    server = smtp_server(handler=SlowHandler(delay=0.02))
    jobs = job_file(tmp_path, 150)
    report = tmp_path / "report.jsonl"
    where = f"{server.host}:{server.port}"
    command = [sys.executable, "-m", "smtpc", "bulk", "--server", where]
    command += ["--progress", "none", "--connections", "2"]
    command += ["--report", str(report), str(jobs)]
    env = {**os.environ, "PYTHONPATH": str(MAIN)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (report.exists() and report.read_text().count("\n") >= 5):
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    first = report_lines(report)
    assert 5 <= len(first) < 150
    sent_first = set(deliveries(server))
    assert {(i, to) for (i, to, o) in outcomes(first) if o == "delivered"} == sent_first

    assert bulk(server, "--connections", "4", "--resume", str(report), str(jobs)) == 0
    delivered = deliveries(server)
    assert set(delivered) == expected(150)
    assert set(delivered.values()) == {1}
    final = outcomes(report_lines(report))
    assert {(i, to) for (i, to, o) in final if o == "delivered"} == expected(150)
    assert max(final.values()) == 1


@pytest.mark.parametrize("extra", [[], ["--report"]])
def test_resume_with_nothing_left(
    smtpd: SMTPServer, tmp_path: Path, extra: list[str]
) -> None:
    jobs = job_file(tmp_path, 3)
    report = tmp_path / "report.jsonl"
    assert bulk(smtpd, "--report", str(report), str(jobs)) == 0
    again = [*extra, str(tmp_path / "new.jsonl")] if extra else []
    assert bulk(smtpd, "--resume", str(report), *again, str(jobs)) == 0
    assert len(smtpd.envelopes) == 3


# --- --direct under a TLS policy ------------------------------------------------------


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer()
    yield server
    server.stop()


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    started = Hosts(_port_free_everywhere())
    yield started
    for controller in started.controllers:
        controller.stop()


def test_direct_tls_policies_and_the_report(
    dns: DNSServer,
    hosts: Hosts,
    smtpd: SMTPServer,
    tls_ca: trustme.CA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dns.add("tls.test.", "MX", "10 mx.tls.test.")
    dns.add("mx.tls.test.", "A", "127.0.0.2")
    dns.add("fallback.test.", "MX", "10 mx.fallback.test.")
    dns.add("mx.fallback.test.", "A", "127.0.0.3")
    mx_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(*MX_CERT_NAMES).configure_cert(mx_context)
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_context)
    broken = hosts.smtp("127.0.0.3", TLSRecordingHandler(), _broken_tls_context())
    ca = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    both = tmp_path / "both.jsonl"
    both.write_text(
        "".join(
            json.dumps({"id": f"m{n}", "from": SENDER, "to": [to], "content": "Hi."})
            + "\n"
            for n, to in enumerate(["a@tls.test", "b@fallback.test"])
        )
    )
    one = tmp_path / "one.jsonl"
    one.write_text(both.read_text().splitlines()[0] + "\n")
    direct = [
        "bulk",
        "--direct",
        "--dns-server",
        f"127.0.0.1:{dns.port}",
        "--smtp-port",
        str(hosts.port),
        "--timeout",
        "2",
        "--attempts",
        "1",
        "--progress",
        "none",
    ]

    def run(*args: str) -> dict[str, dict[str, Any]]:
        report = tmp_path / "report.jsonl"
        report.unlink(missing_ok=True)
        assert cli.main([*direct, "--report", str(report), *args]) == 0
        lines = report_lines(report)
        return {line["id"]: line["recipients"][0] for line in lines}

    # verify, trusting the test's CA: the certificate names mx.tls.test.
    [a] = run("--direct-tls", "verify", "--cafile", str(ca), str(one)).values()
    [version] = server.envelope_tls
    assert version is not None and version.startswith("TLSv1.")
    assert (a["outcome"], a["tls"], a["tls_fallback"]) == ("delivered", version, None)

    # The default is may: TLS where it works, clear text after a failed
    # handshake, each message once.
    got = run(str(both))
    assert (got["m0"]["tls"], got["m0"]["tls_fallback"]) == (version, None)
    b = got["m1"]
    assert (b["outcome"], b["code"], b["tls"]) == ("delivered", 250, None)
    assert b["tls_fallback"].startswith("TLS handshake failed: ")
    assert server.envelope_tls == [version, version]
    assert broken.envelope_tls == [None] and broken.handshakes == 0

    # none: clear text though STARTTLS is offered.
    [a] = run("--direct-tls", "none", str(one)).values()
    assert (a["outcome"], a["tls"], a["tls_fallback"]) == ("delivered", None, None)
    assert server.envelope_tls == [version, version, None]

    # Misused options: a usage error, nothing sent.
    report = str(tmp_path / "bad.jsonl")
    for bad in (
        [*direct, "--direct-tls", "encrypt", "--cafile", str(ca)],
        [*direct, "--tls", "starttls"],
        ["bulk", "--server", f"{smtpd.host}:{smtpd.port}", "--direct-tls", "may"],
    ):
        capsys.readouterr()
        assert cli.main([*bad, "--report", report, str(one)]) == 2
        assert "--direct" in capsys.readouterr().err
    assert len(server.envelope_tls) == 3 and smtpd.envelopes == []

    # Through a relay, the report has no TLS fields.
    assert bulk(smtpd, "--report", report, str(one)) == 0
    [line] = report_lines(Path(report))
    assert "tls" not in line["recipients"][0]
    assert len(smtpd.envelopes) == 1
