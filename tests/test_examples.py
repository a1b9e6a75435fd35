"""The example messages reach the server byte for byte, line endings made CRLF."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from servers import SMTPServer

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.eml"))


def crlf(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"plain.eml", "utf8.eml", "multipart.eml", "dots.eml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
@pytest.mark.parametrize("source", ["bytes", "file"])
def test_example_stored_unchanged(path: Path, source: str, smtpd: SMTPServer) -> None:
    import smtpc

    with path.open("rb") as file, smtpc.SMTP(smtpd.host, smtpd.port) as client:
        message = file.read() if source == "bytes" else file
        refused = client.sendmail("sender@example.com", ["rcpt@example.org"], message)
    assert refused == {}
    assert smtpd.envelopes[-1].original_content == crlf(path.read_bytes())
