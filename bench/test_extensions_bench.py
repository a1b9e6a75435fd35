"""What PIPELINING and BDAT gain over plain DATA, small and large messages.

Two servers on loopback:
  smtp-sink  Postfix's sink offers PIPELINING but not CHUNKING: smtpc with
             PIPELINING, smtpc without it, and smtplib (which never pipelines).
  Postfix    the private instance of tests/postfix.py (its smtpd with the
             large size limit) offers both and queues and delivers each
             message to a maildir: smtpc with BDAT (``chunking=True``), with
             DATA (``chunking=False``), each with and without PIPELINING, and
             smtplib.

Messages: 2 KB (a batch over one session) and 10 MB read from a file with CRLF
line endings (smtpc streams the open file; smtplib's caller reads it whole).
Each client runs in a child process and times itself from connect to QUIT;
all variants take turns round by round; the best of the rounds counts, as
other work on a shared machine only ever slows a run down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Sink, record, run_worker
from postfix import PostfixServer
from test_large import write_message

EXT_WORKER = Path(__file__).resolve().parent / "_bulk_worker.py"
ROUNDS = 3
MB = 2**20
LARGE_SIZE = 10 * MB
# Messages per run: (server, size) -> count.
COUNTS = {
    ("sink", "small"): 2000,
    ("sink", "large"): 3,
    ("postfix", "small"): 200,
    ("postfix", "large"): 3,
}
# label -> (client, options)
VARIANTS: dict[str, tuple[str, dict[str, bool]]] = {
    "smtpc BDAT, PIPELINING": ("smtpc", {"chunking": True, "pipelining": True}),
    "smtpc BDAT": ("smtpc", {"chunking": True, "pipelining": False}),
    "smtpc DATA, PIPELINING": ("smtpc", {"chunking": False, "pipelining": True}),
    "smtpc DATA": ("smtpc", {"chunking": False, "pipelining": False}),
    "smtplib": ("smtplib", {}),
}
SINK_VARIANTS = ("smtpc DATA, PIPELINING", "smtpc DATA", "smtplib")


@pytest.fixture(scope="module")
def large_file(scratch: Path) -> Path:
    path = scratch / "extensions-10mb-CRLF.eml"
    write_message(path, LARGE_SIZE, b"\r\n")
    return path


def _variant(
    label: str, host: str, port: int, count: int, path: Path | None, to: list[str]
) -> Callable[[], float]:
    client, options = VARIANTS[label]
    args = {
        "client": client,
        "host": host,
        "port": port,
        "messages": count,
        "path": None if path is None else str(path),
        "to": to,
        "options": options,
    }

    def run() -> float:
        result = run_worker("extensions", args, script=EXT_WORKER)
        # The variant did what its label says: BDAT exactly when asked for
        # and offered.
        offered = "chunking" in result["features"]
        if result["bdat"] != (options.get("chunking", False) and offered):
            raise AssertionError(f"{label}: BDAT used: {result['bdat']}")
        return float(result["seconds"])

    return run


def _empty_maildir(server: PostfixServer, local_part: str) -> None:
    # Delivered copies are not needed; 10 MB messages would pile up.
    for folder in ("new", "tmp", "cur"):
        directory = server.maildir(local_part) / folder
        if directory.is_dir():
            for path in directory.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _measure(
    labels: tuple[str, ...],
    host: str,
    port: int,
    server: str,
    path: Path,
    to: list[str],
    after_round: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, float]]:
    """size -> label -> messages per second."""
    rates: dict[str, dict[str, float]] = {}
    for size in ("small", "large"):
        count = COUNTS[server, size]
        source = path if size == "large" else None
        candidates = {
            label: _variant(label, host, port, count, source, to) for label in labels
        }
        samples: dict[str, list[float]] = {label: [] for label in labels}
        names = list(labels)
        for r in range(ROUNDS):
            # Taking turns in a rotating order, as take_turns does, one round
            # at a time, so that the maildir is emptied between rounds.
            for label in names[r % len(names) :] + names[: r % len(names)]:
                samples[label].append(candidates[label]())
            after_round()
        rates[size] = {label: count / min(s) for label, s in samples.items()}
    return rates


def _record(server: str, rates: dict[str, dict[str, float]]) -> None:
    record(
        f"extensions, {server}",
        messages_per_s={
            f"{size}": {k: round(v, 1) for k, v in r.items()}
            for size, r in rates.items()
        },
        times_smtplib={
            f"{size}": {k: round(v / r["smtplib"], 2) for k, v in r.items()}
            for size, r in rates.items()
        },
    )


@pytest.fixture(scope="module")
def on_sink(
    start_sink: Callable[..., Sink], large_file: Path
) -> dict[str, dict[str, float]]:
    sink = start_sink(None)
    to = ["sink@server.example"]
    rates = _measure(SINK_VARIANTS, sink.host, sink.port, "sink", large_file, to)
    _record("smtp-sink (PIPELINING, no CHUNKING)", rates)
    return rates


@pytest.fixture(scope="module")
def on_postfix(
    postfix_server: PostfixServer, large_file: Path
) -> Iterator[dict[str, dict[str, float]]]:
    server = postfix_server
    to = [server.address("alice")]
    rates = _measure(
        tuple(VARIANTS),
        server.host,
        server.large_port,
        "postfix",
        large_file,
        to,
        lambda: _empty_maildir(server, "alice"),
    )
    _record("Postfix smtpd (PIPELINING, CHUNKING)", rates)
    yield rates
    _empty_maildir(server, "alice")


def test_pipelining_gain_small_on_sink(on_sink: dict[str, dict[str, float]]) -> None:
    # Two round trips a message instead of four.
    small = on_sink["small"]
    assert small["smtpc DATA, PIPELINING"] >= 1.1 * small["smtpc DATA"]


def test_pipelining_beats_smtplib_small_on_sink(
    on_sink: dict[str, dict[str, float]],
) -> None:
    small = on_sink["small"]
    assert small["smtpc DATA, PIPELINING"] >= 1.1 * small["smtplib"]


def test_large_beats_smtplib_on_sink(on_sink: dict[str, dict[str, float]]) -> None:
    large = on_sink["large"]
    assert large["smtpc DATA, PIPELINING"] >= 1.2 * large["smtplib"]


def test_bdat_offered_and_used_on_postfix(
    on_postfix: dict[str, dict[str, float]],
) -> None:
    # _variant checks, message by message, that BDAT went out exactly when
    # asked for; here every variant produced a rate.
    for size in ("small", "large"):
        assert set(on_postfix[size]) == set(VARIANTS)
        assert all(rate > 0 for rate in on_postfix[size].values())


def test_bdat_large_beats_smtplib_on_postfix(
    on_postfix: dict[str, dict[str, float]],
) -> None:
    """Budget: 10 MB over BDAT to Postfix at 1.2x smtplib's rate or more.

    Measured 1.29-2.3x. Against DATA with PIPELINING, BDAT with PIPELINING
    swings between 0.6x and 1.0x from run to run: Postfix's smtpd hands each
    64 KiB chunk to its cleanup server before it replies, and either way the
    rate is Postfix's, not the client's.
    """
    large = on_postfix["large"]
    assert large["smtpc BDAT, PIPELINING"] >= 1.2 * large["smtplib"]
