"""What ``import smtpc`` loads: nothing that only TLS or asyncio needs.

Each check runs in a fresh interpreter started with ``-S``, so that what this
machine's site-packages happen to import at start-up cannot hide a module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Packages a plain SMTP client does not need, that smtplib loads.
DEFERRED = ("asyncio", "email", "ssl")


def _python(code: str, *args: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _loaded_after(code: str) -> list[str]:
    probe = f"""
import json, sys
{code}
print(json.dumps([m for m in {DEFERRED!r} + ("socket",) if m in sys.modules]))
"""
    loaded: list[str] = json.loads(_python(probe))
    return loaded


def test_import_and_smtp_class_load_no_deferred_package() -> None:
    loaded = _loaded_after("import smtpc; smtpc.SMTP; smtpc.LMTP; smtpc.SMTP_SSL")
    # The client needs its socket module; nothing of DEFERRED.
    assert loaded == ["socket"]


def test_smtplib_names_load_no_deferred_package() -> None:
    names = [n for n in dir(__import__("smtplib")) if n.startswith(("SMTP", "LMTP"))]
    loaded = _loaded_after(f"import smtpc\nfor n in {names!r}: getattr(smtpc, n)")
    assert loaded == ["socket"]


def test_ssl_loads_with_the_first_tls_context() -> None:
    code = """
import sys, smtpc
before = "ssl" in sys.modules
client = smtpc.SMTP_SSL(local_hostname="client.example")
print(before, "ssl" in sys.modules, type(client.context).__name__)
"""
    assert _python(code).split() == ["False", "True", "SSLContext"]


def test_asyncio_loads_with_the_async_client_only() -> None:
    code = """
import sys, smtpc
before = "asyncio" in sys.modules
smtpc.AsyncSMTP
print(before, "asyncio" in sys.modules)
"""
    assert _python(code).split() == ["False", "True"]
