"""Fixtures for the benchmarks: sinks on loopback, client workers, the results table.

Every comparison runs smtpc and its peers in the same run, taking turns round by
round, and is reported as ratios: the machines here are shared and noisy, so
absolute figures drift between runs while ratios hold. Figures go to the
terminal summary and, with ``--bench-json PATH``, to a JSON file.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The private Postfix instance of the tests (tests/postfix.py), for BDAT:
# appended, so that ``conftest`` stays this file.
sys.path.append(str(ROOT / "tests"))
from postfix import postfix_server  # noqa: E402, F401 - a fixture
from servers import _free_port  # noqa: E402 - one free-port probe for both
from servers import _wait_listening as _listening  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_worker.py"
HOST = "127.0.0.1"
SMTP_SINK = Path("/usr/sbin/smtp-sink")
SMTP_SOURCE = Path("/usr/sbin/smtp-source")
TASKSET = shutil.which("taskset")

# Figures of this run: section -> rows; filled by the measurements.
RESULTS: dict[str, Any] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-json",
        metavar="PATH",
        help="write every figure of this run to PATH as JSON",
    )


def record(section: str, **figures: Any) -> None:
    """Keep figures for the summary and the JSON file."""
    RESULTS.setdefault(section, {}).update(figures)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not RESULTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("smtpc figures (ratios hold; absolute figures drift)")
    for section, figures in RESULTS.items():
        write(f"{section}:")
        for name, value in figures.items():
            write(f"  {name}: {json.dumps(value)}")
    path = config.getoption("--bench-json")
    if path:
        machine = {
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        Path(path).write_text(json.dumps({"machine": machine, **RESULTS}, indent=2))
        write(f"figures written to {path}")


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


# --- cores -----------------------------------------------------------------------


def _compiled_core_built() -> bool:
    return any((ROOT / "smtpc").glob("_core*.so")) or any(
        (ROOT / "smtpc").glob("_core*.pyd")
    )


@pytest.fixture(params=["c", "py"])
def core_impl(request: pytest.FixtureRequest) -> str:
    """Which smtpc core a benchmark runs: ``"c"`` or ``"py"``."""
    if request.param == "c":
        if os.environ.get("SMTPC_NO_EXTENSIONS") == "1":
            pytest.skip("SMTPC_NO_EXTENSIONS=1: the compiled core is not used")
        if not _compiled_core_built():
            pytest.fail("the compiled core is not built: python setup.py build_ext -i")
    return str(request.param)


# --- child processes -----------------------------------------------------------


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` run on one CPU only, when ``cpu`` is given."""
    if cpu is None:
        return command
    if TASKSET is None:
        pytest.skip("taskset is not installed")
    return [TASKSET, "-c", str(cpu), *command]


def worker_env(core: str = "c") -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    env.pop("SMTPC_NO_EXTENSIONS", None)
    if core == "py":
        env["SMTPC_NO_EXTENSIONS"] = "1"
    return env


def run_worker(
    task: str,
    args: dict[str, Any],
    *,
    core: str = "c",
    cpu: int | None = None,
    script: Path = WORKER,
) -> dict[str, Any]:
    """Run one client in a fresh interpreter; its JSON result.

    ``core`` picks smtpc's core for the child; ``cpu`` pins the child to it;
    ``script`` is the worker that runs ``task``.
    """
    done = subprocess.run(
        pinned([sys.executable, str(script), task, json.dumps(args)], cpu),
        capture_output=True,
        text=True,
        env=worker_env(core),
        timeout=600,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{task} {args}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if "core" in result and result["core"] != core:
        raise RuntimeError(f"asked for the {core} core, the child ran {result['core']}")
    return result


def take_turns(
    candidates: dict[str, Callable[[], float]], rounds: int
) -> dict[str, list[float]]:
    """Run each candidate ``rounds`` times, taking turns in a rotating order,
    so that a slow spell of the machine falls on all of them alike."""
    names = list(candidates)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(candidates[name]())
    return samples


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# --- smtp-sink -----------------------------------------------------------------


@dataclass
class Sink:
    host: str
    port: int
    cpu: int | None


@pytest.fixture(scope="session")
def start_sink() -> Iterator[Callable[..., Sink]]:
    """Factory: ``start_sink(cpu=None)`` runs Postfix's smtp-sink on loopback.

    It discards what it receives and offers PIPELINING, as it does by
    default; ``cpu`` pins it to one CPU.
    """
    if not SMTP_SINK.exists():
        pytest.skip(f"{SMTP_SINK} is missing: install Debian's postfix package")
    started: list[subprocess.Popen[bytes]] = []
    sinks: dict[int | None, Sink] = {}

    def start(cpu: int | None = None) -> Sink:
        if cpu in sinks:
            return sinks[cpu]
        # smtp-sink refuses to keep root privileges.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        for _ in range(5):
            port = _free_port()
            command = [str(SMTP_SINK), *user, "-h", "sink.example", f"{HOST}:{port}"]
            process = subprocess.Popen(
                pinned([*command, "256"], cpu),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(process)
            if _listening(process, port):
                sinks[cpu] = Sink(HOST, port, cpu)
                return sinks[cpu]
        pytest.fail("smtp-sink did not start listening")

    yield start
    for process in started:
        process.terminate()
        process.wait(5)


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    """A directory for generated messages and builds, removed at the end."""
    with tempfile.TemporaryDirectory(prefix="smtpc-bench-") as name:
        yield Path(name)
