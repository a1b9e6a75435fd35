"""`smtpc footprint` and `smtpc bench`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _smtpc(*args: str) -> Any:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    done = subprocess.run(
        [sys.executable, "-m", "smtpc", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _expected_core() -> str:
    return "py" if os.environ.get("SMTPC_NO_EXTENSIONS") == "1" else "c"


def test_footprint_json_reports_this_machine() -> None:
    report = _smtpc("footprint", "--json")
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert report["core"] == _expected_core()
    assert report["buffer_size"] == 256
    # A session after EHLO holds a few KB beyond its socket, never nothing.
    assert 200 < report["session"]["held"] < 64 * 1024
    cost = report["import"]
    assert 0 < cost["seconds"] < 5
    assert cost["rss"] > 0
    assert "asyncio" not in cost["loads"]


def test_footprint_reads_the_compiled_core() -> None:
    report = _smtpc("footprint", "--json", "--no-import")
    assert "import" not in report
    extension = report["extension"]
    if extension is None:
        pytest.skip("the compiled core is not built")
    assert extension["code"] >= extension["text"] > 1024
    assert extension["file"] > extension["code"]
    if extension["symbols"]:
        parts = extension["hot_path"]
        assert set(parts) >= {"dot-stuffer", "emitter", "command composer", "base64"}
        assert all(size > 0 for size in parts.values())
        assert 0 < extension["hot_path_share"] < 1


def test_bench_with_the_builtin_sink() -> None:
    result = _smtpc(
        "bench", "--messages", "20", "--rounds", "1", "--sink", "builtin", "--json"
    )
    assert result["sink"] == "built-in sink"
    assert result["messages"] == 20
    assert result["size"] == 2048
    assert result["core"] == _expected_core()
    assert result["smtpc"] > 0 and result["smtplib"] > 0
    assert result["ratio"] == pytest.approx(result["smtpc"] / result["smtplib"])


@pytest.mark.postfix
def test_bench_with_smtp_sink() -> None:
    if not Path("/usr/sbin/smtp-sink").exists():
        pytest.skip("Postfix's smtp-sink is not installed")
    result = _smtpc(
        "bench", "--messages", "20", "--rounds", "1", "--sink", "smtp-sink", "--json"
    )
    assert result["sink"] == "smtp-sink"
    assert result["smtpc"] > 0 and result["smtplib"] > 0


def test_bench_refuses_no_messages() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpc", "bench", "--messages", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "at least 1" in done.stderr


@pytest.mark.parametrize(
    ("symbol", "part"),
    [
        ("__pyx_pw_5smtpc_5_core_7Emitter_3command", "command composer"),
        ("__pyx_pw_5smtpc_5_core_7Emitter_9write_data", "emitter"),
        ("__pyx_tp_dealloc_5smtpc_5_core_LineEncoder", "dot-stuffer"),
        ("__pyx_f_5smtpc_5_core__encode_chunk", "dot-stuffer"),
        # The C loop and what it calls, when the compiler keeps them apart.
        ("smtpc_stuff", "dot-stuffer"),
        ("smtpc_masks", "dot-stuffer"),
        ("smtpc_neon_mask", "dot-stuffer"),
        ("__pyx_f_5smtpc_5_core__view", "argument helpers"),
        # MIME encoders, MD4 and module set-up are not on the hot path.
        ("smtpc_b64_lines", None),
        ("__pyx_pw_5smtpc_5_core_13Base64Encoder_3encode", None),
        ("__pyx_pw_5smtpc_5_core_5md4", None),
        ("__pyx_pymod_exec__core", None),
    ],
)
def test_hot_path_parts(symbol: str, part: str | None) -> None:
    from smtpc import footprint

    assert footprint.hot_path_part(symbol) == part
