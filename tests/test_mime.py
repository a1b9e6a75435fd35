"""Streaming MIME: the core's transfer encoders and composed messages.

Encoders run in both core twins; composed messages go to aiosmtpd on loopback
(smtp-sink for BDAT) and are parsed back with the email package.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import quopri
import tracemalloc
from collections.abc import Callable, Iterator
from email import encoders, message_from_bytes, policy, quoprimime
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postfix import PostfixServer, original_content
from servers import SMTPServer

import smtpc
from smtpc import cli, core
from smtpc.mime import CHUNK_SIZE, Message, base64_length, transfer_encoding
from smtpc.sources import open_source

# Octets that exercise every quoted-printable rule: line breaks, trailing
# space and tab, "=", 8-bit octets, NUL, and plain text to fill lines.
QP_ALPHABET = b"ab .=\t \r\n\r\n\x00\xe9\xff~!"
# core_impl only picks a module: nothing in it needs resetting between examples.
_FIXTURE = [HealthCheck.function_scoped_fixture]


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _encode(encoder: Any, pieces: list[bytes]) -> bytes:
    out = [encoder.encode(piece) for piece in pieces]
    return b"".join(out) + encoder.finish()


def _canonical(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


# --- base64 --------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=_FIXTURE)
@given(data=st.binary(max_size=700), cuts=st.lists(st.integers(0, 700), max_size=8))
def test_base64_is_encodebytes_with_crlf_for_any_split(
    core_impl: ModuleType, data: bytes, cuts: list[int]
) -> None:
    out = _encode(core_impl.Base64Encoder(), _split(data, cuts))
    assert out == base64.encodebytes(data).replace(b"\n", b"\r\n")
    assert len(out) == base64_length(len(data))
    assert all(len(line) <= 76 for line in out.split(b"\r\n"))


def test_base64_encoder_returns_whole_lines_and_resets(core_impl: ModuleType) -> None:
    encoder = core_impl.Base64Encoder()
    assert encoder.encode(b"x" * 56) == b""
    line = encoder.encode(memoryview(b"x" * 2))
    assert line.endswith(b"\r\n") and len(line) == 78
    assert encoder.finish() == b"eA==\r\n"
    assert encoder.finish() == b""
    assert _encode(encoder, [b"abc"]) == b"YWJj\r\n"


# --- quoted-printable ----------------------------------------------------------


qp_text = st.lists(st.sampled_from(list(QP_ALPHABET)), max_size=400).map(bytes)
long_lines = st.tuples(st.integers(60, 200), qp_text).map(lambda t: b"w" * t[0] + t[1])


@settings(max_examples=300, deadline=None, suppress_health_check=_FIXTURE)
@given(data=qp_text | long_lines, cuts=st.lists(st.integers(0, 600), max_size=8))
def test_quoted_printable_for_any_split(
    core_impl: ModuleType, data: bytes, cuts: list[int]
) -> None:
    out = _encode(core_impl.QuotedPrintableEncoder(), _split(data, cuts))
    # The email package's text encoder at 76 columns makes the same choices.
    expected = quoprimime.body_encode(data.decode("latin-1"), 76, "\r\n")
    assert out == expected.encode("ascii")
    assert binascii.a2b_qp(out) == _canonical(data)
    assert quopri.decodestring(out) == _canonical(data)
    for line in out.split(b"\r\n"):
        assert len(line) <= 76
        assert not line.endswith((b" ", b"\t"))


@settings(max_examples=100, deadline=None)
@given(data=qp_text | long_lines, cuts=st.lists(st.integers(0, 600), max_size=8))
def test_twins_return_the_same_bytes_call_by_call(data: bytes, cuts: list[int]) -> None:
    if os.environ.get("SMTPC_NO_EXTENSIONS") == "1":
        pytest.skip("SMTPC_NO_EXTENSIONS=1: the compiled core is not used")
    from smtpc import _core, _core_py

    for name in ("Base64Encoder", "QuotedPrintableEncoder"):
        compiled, twin = getattr(_core, name)(), getattr(_core_py, name)()
        for piece in _split(data, cuts):
            assert compiled.encode(piece) == twin.encode(bytearray(piece))
        assert compiled.finish() == twin.finish()


def test_quoted_printable_line_breaks_and_trailing_space(core_impl: ModuleType) -> None:
    encoder = core_impl.QuotedPrintableEncoder()
    # CRLF, bare LF and bare CR are each one line break; a CR that ends a
    # chunk pairs with an LF that starts the next.
    out = _encode(encoder, [b"a \r", b"\nb\tc\t\rd=\xe9\n", b"end "])
    assert out == b"a=20\r\nb\tc=09\r\nd=3D=E9\r\nend=20"


def test_quoted_printable_differs_from_email_defaults_only_in_line_length(
    core_impl: ModuleType,
) -> None:
    text = ("Grüße aus Zürich, " * 30 + "\n") * 3
    ours = _encode(core_impl.QuotedPrintableEncoder(), [text.encode()])
    # EmailMessage folds quoted-printable at policy.max_line_length, 78.
    message = EmailMessage()
    message.set_content(text, cte="quoted-printable")
    theirs = message.get_payload().encode("ascii")
    assert max(map(len, ours.split(b"\r\n"))) == 76
    assert max(map(len, theirs.split(b"\n"))) == 78
    assert binascii.a2b_qp(ours) == _canonical(binascii.a2b_qp(theirs))
    # email.encoders.encode_quopri escapes every space, not only a last one.
    legacy = MIMEApplication(b"a b", _encoder=encoders.encode_quopri)
    assert legacy.get_payload() == "a=20b"
    assert _encode(core_impl.QuotedPrintableEncoder(), [b"a b"]) == b"a b"


@pytest.mark.parametrize("name", ["Base64Encoder", "QuotedPrintableEncoder"])
def test_encoders_refuse_text(core_impl: ModuleType, name: str) -> None:
    with pytest.raises(TypeError, match="expected a bytes-like object, not str"):
        getattr(core_impl, name)().encode("text")


def test_core_exports_the_encoders() -> None:
    expected = "py" if os.environ.get("SMTPC_NO_EXTENSIONS") == "1" else "c"
    assert expected == core.IMPLEMENTATION
    assert core.Base64Encoder().encode(b"a" * 57).endswith(b"\r\n")


# --- choosing a transfer encoding -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "eight_bit", "fits", "eight_bit_mime", "binary_mime", "expected"),
    [
        (True, False, True, False, False, "7bit"),
        (True, True, True, True, False, "8bit"),
        (True, True, True, False, False, "quoted-printable"),
        (True, True, False, True, False, "quoted-printable"),
        (True, None, None, True, False, "quoted-printable"),
        (False, True, True, True, False, "base64"),
        (False, None, None, True, True, "binary"),
    ],
)
def test_transfer_encoding_choice(
    text: bool,
    eight_bit: bool | None,
    fits: bool | None,
    eight_bit_mime: bool,
    binary_mime: bool,
    expected: str,
) -> None:
    choice = transfer_encoding(
        text=text,
        eight_bit=eight_bit,
        fits_lines=fits,
        eight_bit_mime=eight_bit_mime,
        binary_mime=binary_mime,
    )
    assert choice == expected


# --- composed messages ----------------------------------------------------------


def _parse(content: bytes) -> EmailMessage:
    parsed = message_from_bytes(content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert not parsed.defects
    return parsed


def _chunks_of(data: bytes, size: int) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    return chunks


@pytest.fixture
def attachments(tmp_path: Path) -> dict[str, bytes]:
    text = "".join(f"line {i}: naïve café, trailing space \r\n" for i in range(300))
    (tmp_path / "notes.txt").write_bytes(text.encode("utf-8"))
    binary = os.urandom(200_003)
    (tmp_path / "blob.bin").write_bytes(binary)
    return {"notes.txt": text.encode("utf-8"), "blob.bin": binary}


def _three_attachments(tmp_path: Path, attachments: dict[str, bytes]) -> Message:
    msg = Message(
        from_addr="Ånne Example <anne@example.org>",
        to=["bob@example.net", "Carol <carol@example.net>"],
        subject="Quarterly report — ünïcode and a long subject that has to fold "
        "across more than one header line",
        text="Hello,\nthe report is attached.\n",
        html="<p>Hello, the report is <b>attached</b>.</p>\n",
    )
    msg.attach(tmp_path / "notes.txt", charset="utf-8")
    with open(tmp_path / "blob.bin", "rb") as file:
        msg.attach(io.BytesIO(file.read()), "blob.bin")
    data = b"%PDF-1.4 " + bytes(range(256)) * 40
    msg.attach(_chunks_of(data, 1000), "Überblick – 2024 年.pdf", size=len(data))
    attachments["Überblick – 2024 年.pdf"] = data
    return msg


def test_three_attachments_through_aiosmtpd_parse_back_byte_for_byte(
    smtpd: SMTPServer, tmp_path: Path, attachments: dict[str, bytes]
) -> None:
    msg = _three_attachments(tmp_path, attachments)
    with smtpc.SMTP(smtpd.host, smtpd.port) as client:
        # sendmail negotiates encodings with the server's extensions itself.
        refused = client.sendmail(msg.from_addr, msg.recipients, msg)
    assert refused == {}

    (envelope,) = smtpd.envelopes
    assert b"Content-Transfer-Encoding: 8bit" in envelope.original_content
    assert envelope.rcpt_tos == ["bob@example.net", "carol@example.net"]
    assert f"SIZE={len(envelope.original_content)}" in envelope.mail_options
    # aiosmtpd takes BODY= off the recorded options; the 8bit part shows it.
    assert msg.eight_bit
    parsed = _parse(envelope.original_content)
    assert parsed["Subject"].startswith("Quarterly report — ünïcode")
    assert parsed["From"].addresses[0].display_name == "Ånne Example"
    assert parsed.get_content_type() == "multipart/mixed"

    body = parsed.get_body(("plain",))
    assert body is not None
    # Text line breaks are canonical CRLF on the wire, and the parser keeps them.
    assert body.get_content() == "Hello,\r\nthe report is attached.\r\n"
    html = parsed.get_body(("html",))
    assert html is not None and "<b>attached</b>" in html.get_content()
    found = {p.get_filename(): p for p in parsed.iter_attachments()}
    assert set(found) == set(attachments)
    for name, data in attachments.items():
        assert found[name].get_payload(decode=True) == data, name
    assert found["notes.txt"]["Content-Transfer-Encoding"] == "8bit"
    assert found["blob.bin"]["Content-Transfer-Encoding"] == "base64"
    assert found["blob.bin"].get_content_type() == "application/octet-stream"
    assert found["Überblick – 2024 年.pdf"].get_content_type() == "application/pdf"


def test_without_8bitmime_text_goes_quoted_printable(
    tmp_path: Path, attachments: dict[str, bytes]
) -> None:
    msg = _three_attachments(tmp_path, attachments)
    content = b"".join(msg)
    assert content.isascii() and not msg.eight_bit
    parsed = _parse(content)
    found = {p.get_filename(): p for p in parsed.iter_attachments()}
    notes = found["notes.txt"]
    assert notes["Content-Transfer-Encoding"] == "quoted-printable"
    assert notes.get_payload(decode=True) == attachments["notes.txt"]
    # The plain body is ASCII: 7bit whatever the server offers.
    body = parsed.get_body(("plain",))
    assert body is not None and body["Content-Transfer-Encoding"] == "7bit"


def test_declared_size_equals_the_bytes_produced(
    tmp_path: Path, attachments: dict[str, bytes]
) -> None:
    long_line = tmp_path / "long.txt"
    long_line.write_bytes(b"x" * 2000 + b"\n\xe9 tail \n")
    for eight_bit_mime in (False, True):
        msg = _three_attachments(tmp_path, dict(attachments))
        msg.attach(long_line)
        msg.add_inline(b"\x89PNG" + os.urandom(1000), "logo.png")
        msg.negotiate({"8bitmime": ""} if eight_bit_mime else {})
        content = b"".join(msg)
        assert msg.size == len(content)
        assert msg.eight_bit == eight_bit_mime
        parsed = _parse(content)
        found = {p.get_filename(): p for p in parsed.walk()}
        assert found["long.txt"]["Content-Transfer-Encoding"] == "quoted-printable"
        assert found["long.txt"].get_payload(decode=True) == (
            b"x" * 2000 + b"\r\n\xe9 tail \r\n"
        )
        assert found["logo.png"]["Content-Disposition"] == 'inline; filename="logo.png"'


def test_size_is_unknown_when_a_part_length_is() -> None:
    msg = Message(from_addr="a@example.org", to="b@example.org", text="hi")
    msg.attach(iter([b"abc", b"def"]), "data.bin")
    source = open_source(msg)
    assert source.size is None and source.eight_bit is False
    content = b"".join(source.chunks)
    found = [p for p in _parse(content).iter_attachments()]
    assert found[0].get_payload(decode=True) == b"abcdef"
    with pytest.raises(ValueError, match="read only once"):
        b"".join(msg)


def test_a_file_that_changes_length_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "grows.bin"
    path.write_bytes(b"a" * 100)
    msg = Message(from_addr="a@example.org", to="b@example.org", text="x")
    msg.attach(path)
    assert msg.size is not None
    path.write_bytes(b"a" * 200)
    with pytest.raises(ValueError, match="changed while it was sent"):
        b"".join(msg)


def test_inline_parts_join_the_html_in_multipart_related() -> None:
    cid = "logo.1@example.org"
    msg = Message(
        from_addr="a@example.org",
        to="b@example.org",
        text="plain",
        html=f'<img src="cid:{cid}">',
    )
    assert msg.add_inline(b"GIF89a", "dot.gif", cid=cid) == cid
    generated = msg.add_inline(b"GIF89a", "dot2.gif")
    assert generated.endswith("@example.org") and generated != cid
    parsed = _parse(b"".join(msg))
    assert parsed.get_content_type() == "multipart/alternative"
    related = parsed.get_payload()[1]
    assert related.get_content_type() == "multipart/related"
    image = related.get_payload()[1]
    assert image["Content-ID"] == f"<{cid}>"
    assert image.get_content_type() == "image/gif"
    assert image.get_payload(decode=True) == b"GIF89a"


def test_headers_with_line_breaks_and_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        Message(from_addr="a@example.org", subject="hi\r\nBcc: x@example.org")
    with pytest.raises(ValueError, match="invalid header name"):
        Message(from_addr="a@example.org", headers={"X Bad": "v"})
    with pytest.raises(ValueError, match="writes this header itself"):
        Message(from_addr="a@example.org", headers={"Content-Type": "text/html"})
    with pytest.raises(ValueError, match="not an address"):
        Message(from_addr="nobody")
    with pytest.raises(ValueError, match="SMTPUTF8"):
        Message(from_addr="a@example.org", to="jörg@example.org")
    msg = Message(from_addr="a@example.org")
    with pytest.raises(TypeError, match="content must be"):
        msg.attach(42, "x.bin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no such file"):
        msg.attach("/nonexistent/file.pdf")
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        msg.attach(b"x", "evil\r\nname.txt")


def test_memory_stays_flat_while_a_large_attachment_streams() -> None:
    size = 24 * 2**20
    block = os.urandom(CHUNK_SIZE)

    def chunks() -> Iterator[bytes]:
        for _ in range(size // CHUNK_SIZE):
            yield block

    msg = Message(from_addr="a@example.org", to="b@example.org", text="big")
    msg.attach(chunks, "big.bin", size=size // CHUNK_SIZE * CHUNK_SIZE)
    produced = 0
    tracemalloc.start()
    try:
        for chunk in msg:
            produced += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert produced == msg.size
    assert peak < 1 * 2**20


@pytest.mark.postfix
def test_bdat_streams_the_composed_message_to_postfix(
    postfix_server: PostfixServer,
    tmp_path: Path,
    attachments: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    msg = _three_attachments(tmp_path, attachments)
    token = os.urandom(8).hex()
    msg.add_header("X-Test-Token", token)
    caplog.set_level(logging.DEBUG, logger="smtpc.wire")
    with smtpc.SMTP(postfix_server.host, postfix_server.large_port) as client:
        client.ehlo()
        assert client.has_extn("chunking")
        msg.negotiate(client.esmtp_features)
        result = client.deliver(msg.from_addr, [postfix_server.address("bob")], msg)
    assert result.delivered
    assert any("BDAT" in r.getMessage() for r in caplog.records)
    delivered = postfix_server.wait_for_message("bob", token)
    content = original_content(delivered)
    assert len(content) == msg.size
    found = {p.get_filename(): p for p in _parse(content).iter_attachments()}
    for name, data in attachments.items():
        assert found[name].get_payload(decode=True) == data, name


def test_cli_composes_from_body_html_and_attachments(
    smtpd: SMTPServer, tmp_path: Path, attachments: dict[str, bytes]
) -> None:
    html = tmp_path / "body.html"
    html.write_text("<p>Grüße</p>", encoding="utf-8")
    status = cli.main(
        [
            "send",
            "--server",
            f"{smtpd.host}:{smtpd.port}",
            "--from",
            "anne@example.org",
            "--to",
            "bob@example.net",
            "--subject",
            "Grüße",
            "--body",
            "Hello from the command line",
            "--html",
            f"@{html}",
            "--attach",
            str(tmp_path / "notes.txt"),
            "--attach",
            str(tmp_path / "blob.bin"),
        ]
    )
    assert status == 0
    (envelope,) = smtpd.envelopes
    parsed = _parse(envelope.original_content)
    assert parsed["Subject"] == "Grüße"
    html_part = parsed.get_body(("html",))
    assert html_part is not None and html_part.get_content() == "<p>Grüße</p>"
    found = {p.get_filename(): p for p in parsed.iter_attachments()}
    for name, data in attachments.items():
        assert found[name].get_payload(decode=True) == data


def test_cli_compose_needs_from_and_to(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["send", "--server", "127.0.0.1:1", "--body", "x"]) == 2
    assert "--from and --to" in capsys.readouterr().err
