"""What smtpc costs on the machine it runs on: code, memory, import time.

``smtpc footprint`` prints :func:`report`. Everything here uses the standard
library only: the compiled core's sizes come from its ELF section headers and
symbol table, read by :func:`read_elf`, so the report also works on a board
without binutils; the session it measures talks to a sink on loopback that
it starts itself.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HOT_PATH_PARTS",
    "ElfImage",
    "code_size",
    "extension_path",
    "format_report",
    "hot_path_part",
    "import_cost",
    "read_elf",
    "report",
    "session_memory",
]

# Section header flags (System V ABI, "Sections").
_SHF_WRITE = 0x1
_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4
_SHT_SYMTAB = 2
_SHT_NOBITS = 8
_SHT_DYNSYM = 11
_STT_FUNC = 2

# Cython names our functions "__pyx_<kind>_5smtpc_5_core_<name>"; the loops
# written in C keep their own names, "smtpc_<name>". Each part of the hot path
# is recognised by a piece of that name; the first match wins, so the command
# composer's Emitter.command is not counted as emitter code. Every function of
# the classes on the hot path counts, their construction and type slots
# included, and so do the helpers they share.
_MANGLED = "5smtpc_5_core_"
HOT_PATH_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("command composer", ("command", "_has_line_break", "check_path")),
    (
        "dot-stuffer",
        (
            "DataEncoder",
            "LineEncoder",
            "_encode",
            "smtpc_stuff",
            "smtpc_masks",
            "smtpc_neon",
        ),
    ),
    ("emitter", ("Emitter",)),
    ("base64", ("b64encode",)),
    ("argument helpers", ("_view", "_refuse")),
)


@dataclass
class ElfImage:
    """The parts of an ELF file the footprint needs.

    Attributes:
        machine: the ``e_machine`` number (62 is x86-64, 183 AArch64, 40 ARM).
        sections: name -> (size in octets, flags, type).
        functions: function symbol name -> size in octets.
    """

    machine: int
    sections: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    functions: dict[str, int] = field(default_factory=dict)


def read_elf(path: str | os.PathLike[str]) -> ElfImage:
    """Read the section headers and function symbols of an ELF file.

    Both word sizes and both byte orders are understood. Function sizes come
    from ``.symtab`` when the file has one, else from ``.dynsym``.

    Raises:
        ValueError: the file is not ELF, or its headers are cut short.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise ValueError(f"{path}: not an ELF file")
    wide = data[4] == 2
    order = "<" if data[5] == 1 else ">"
    try:
        return _read_elf(data, wide, order)
    except struct.error:
        raise ValueError(f"{path}: truncated ELF headers") from None


def _read_elf(data: bytes, wide: bool, order: str) -> ElfImage:
    if wide:
        machine = struct.unpack_from(order + "H", data, 18)[0]
        (shoff,) = struct.unpack_from(order + "Q", data, 40)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 58)
        header = order + "IIQQQQIIQQ"
    else:
        machine = struct.unpack_from(order + "H", data, 18)[0]
        (shoff,) = struct.unpack_from(order + "I", data, 32)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 46)
        header = order + "IIIIIIIIII"
    # (name offset, type, flags, offset, size, link, entry size)
    raw = []
    for i in range(shnum):
        f = struct.unpack_from(header, data, shoff + i * shentsize)
        raw.append((f[0], f[1], f[2], f[4], f[5], f[6], f[9]))

    names_at = raw[shstrndx][3]
    image = ElfImage(machine)
    for name_off, kind, flags, _, size, _, _ in raw:
        image.sections[_c_string(data, names_at + name_off)] = (size, flags, kind)

    tables = [s for s in raw if s[1] == _SHT_SYMTAB] or [
        s for s in raw if s[1] == _SHT_DYNSYM
    ]
    for _, _, _, offset, size, link, entsize in tables[:1]:
        strings_at = raw[link][3]
        for at in range(offset, offset + size, entsize):
            if wide:
                name_off, info, _, _, _, sym_size = struct.unpack_from(
                    order + "IBBHQQ", data, at
                )
            else:
                name_off, _, sym_size, info, _, _ = struct.unpack_from(
                    order + "IIIBBH", data, at
                )
            if info & 0xF == _STT_FUNC and sym_size:
                image.functions[_c_string(data, strings_at + name_off)] = sym_size
    return image


def _c_string(data: bytes, at: int) -> str:
    return data[at : data.index(b"\0", at)].decode("ascii", "replace")


def hot_path_part(symbol: str) -> str | None:
    """The hot-path part a function symbol of the core belongs to, or None
    for Cython's runtime support, module set-up and the MIME encoders."""
    if _MANGLED in symbol:
        name = symbol.split(_MANGLED, 1)[1]
    elif symbol.startswith("smtpc_"):
        name = symbol
    else:
        return None
    for part, pieces in HOT_PATH_PARTS:
        if any(piece in name for piece in pieces):
            return part
    return None


def extension_path() -> Path | None:
    """The compiled core's file, or None when it is not built."""
    import importlib.util

    spec = importlib.util.find_spec("smtpc._core")
    if spec is None or spec.origin is None or spec.origin.endswith(".pyx"):
        return None
    return Path(spec.origin)


def code_size(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Code and data sizes of a compiled module, and the hot path's share.

    Returns:
        ``code`` (executable sections), ``rodata``, ``data`` (writable,
        ``.bss`` included) and ``file`` sizes in octets; ``hot_path``, the
        sizes of the core's functions by part, and its ``total``; and
        ``hot_path_share`` of the code.

    Raises:
        ValueError: the file is not ELF.
    """
    image = read_elf(path)
    code = rodata = data = 0
    for size, flags, _ in image.sections.values():
        if not flags & _SHF_ALLOC:
            continue
        if flags & _SHF_EXECINSTR:
            code += size
        elif flags & _SHF_WRITE:
            data += size
        else:
            rodata += size
    parts = dict.fromkeys((part for part, _ in HOT_PATH_PARTS), 0)
    for symbol, size in image.functions.items():
        part = hot_path_part(symbol)
        if part is not None:
            parts[part] += size
    total = sum(parts.values())
    return {
        "file": os.path.getsize(path),
        "machine": image.machine,
        "text": image.sections.get(".text", (0, 0, 0))[0],
        "code": code,
        "rodata": rodata,
        "data": data,
        "symbols": bool(image.functions),
        "hot_path": parts,
        "hot_path_total": total,
        "hot_path_share": total / code if code else 0.0,
    }


def session_memory(
    connect: Callable[[], Any], close: Callable[[Any], None]
) -> dict[str, int]:
    """Memory a connected session holds, as tracemalloc sees it.

    ``connect()`` must return a session that has connected and sent EHLO;
    ``close(session)`` ends it. One session is made and ended first, so that
    caches filled on first use are not counted; then the memory allocated by
    making the second one and still held is summed. Allocations made in
    ``socket.py`` are the transport and are not counted.

    Returns:
        ``held``: octets held beyond the transport; ``transport``: octets
        held by allocations in ``socket.py``.
    """
    import socket

    close(connect())
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.take_snapshot()
        session = connect()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        if started:
            tracemalloc.stop()
    try:
        ignore = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        ]
        transport_filter = [tracemalloc.Filter(True, socket.__file__)]
        diff = after.filter_traces(ignore).compare_to(
            before.filter_traces(ignore), "filename"
        )
        total = sum(stat.size_diff for stat in diff)
        diff = after.filter_traces(transport_filter).compare_to(
            before.filter_traces(transport_filter), "filename"
        )
        transport = sum(stat.size_diff for stat in diff)
    finally:
        close(session)
    return {"held": total - transport, "transport": transport}


def _smtpc_session(host: str, port: int) -> Callable[[], Any]:
    from . import SMTP

    def connect() -> Any:
        client = SMTP(host, port, local_hostname="client.localhost", timeout=10)
        client.ehlo()
        return client

    return connect


def _quit(session: Any) -> None:
    session.quit()


_IMPORT_PROBE = """\
import sys, time
sys.path += {paths!r}
def rss():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        import resource
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
import os
PAGE = os.sysconf("SC_PAGE_SIZE")
before = rss()
start = time.perf_counter()
import {module}
{module}.SMTP
seconds = time.perf_counter() - start
print(seconds, rss() - before, "asyncio" in sys.modules, "email" in sys.modules,
      "ssl" in sys.modules)
"""


def import_cost(
    modules: tuple[str, ...] = ("smtpc",), repeat: int = 5
) -> dict[str, dict[str, Any]]:
    """Time and memory of ``import M`` and ``M.SMTP`` in a fresh interpreter.

    Getting the client class is part of the cost, so that a module loading
    its client on first use does not look cheaper than it is to a caller.
    Each module is measured ``repeat`` times, each time in a new ``python``
    process, the modules taking turns; the medians are given.

    Both modules start from the same bare interpreter (``python -S``, with
    site-packages added to the end of the path): what this machine's
    start-up files happen to import, such as an editable install's finder
    loading re, typing and pathlib, would be free for whichever module
    needs it. Bytecode is compiled and cached (in a temporary directory) by
    one run per module before the measured ones, as an installed package
    has it, whatever ``PYTHONDONTWRITEBYTECODE`` says: otherwise a module
    outside the standard library would be timed compiling its source.

    Returns:
        module -> ``seconds``, ``rss`` (octets the process grew by), and
        ``loads`` (which of asyncio, email, ssl the two steps brought in).

    Raises:
        RuntimeError: an import failed, or the module has no ``SMTP``.
    """
    import site
    import tempfile

    paths = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        paths.append(site.getusersitepackages())
    env = dict(os.environ)
    # The child imports the same smtpc as this process.
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    samples: dict[str, list[tuple[float, int, list[bool]]]] = {m: [] for m in modules}
    with tempfile.TemporaryDirectory(prefix="smtpc-pycache-") as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        for run in range(repeat + 1):
            for module in modules:
                measured = _import_once(module, paths, env)
                if run:
                    samples[module].append(measured)
    result = {}
    for module, runs in samples.items():
        result[module] = {
            "seconds": statistics.median(r[0] for r in runs),
            "rss": int(statistics.median(r[1] for r in runs)),
            "loads": [
                name
                for name, loaded in zip(
                    ("asyncio", "email", "ssl"), runs[-1][2], strict=True
                )
                if loaded
            ],
        }
    return result


def _import_once(
    module: str, paths: list[str], env: dict[str, str]
) -> tuple[float, int, list[bool]]:
    probe = _IMPORT_PROBE.format(module=module, paths=paths)
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"import {module} failed: {done.stderr.strip()}")
    seconds, rss, *loads = done.stdout.split()
    return float(seconds), int(rss), [flag == "True" for flag in loads]


def report(*, imports: bool = True, repeat: int = 5) -> dict[str, Any]:
    """Measure smtpc on this machine.

    Args:
        imports: also measure ``import smtpc`` and getting ``smtpc.SMTP``
            from a bare interpreter (see :func:`import_cost`; it starts
            ``repeat`` interpreters, and one that fills the bytecode cache
            first).
        repeat: interpreters measured for the import cost.

    Returns:
        a JSON-ready dict: ``platform``, ``machine``, ``python``, ``core``,
        ``extension`` (sizes, or None without the compiled core),
        ``session`` (octets held after EHLO), ``buffer_size`` and ``import``.
    """
    from . import core
    from ._sink import spawn

    path = extension_path()
    extension: dict[str, Any] | None = None
    if path is not None:
        try:
            extension = {"path": str(path), **code_size(path)}
        except ValueError as exc:
            extension = {"path": str(path), "error": str(exc)}
    with spawn() as (host, port):
        connect = _smtpc_session(host, port)
        session = session_memory(connect, _quit)
        client = connect()
        buffer_size = client._session.emitter.size
        client.quit()
    result: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "core": core.IMPLEMENTATION,
        "extension": extension,
        "session": session,
        "buffer_size": buffer_size,
    }
    if imports:
        result["import"] = import_cost(("smtpc",), repeat)["smtpc"]
    return result


def _kib(octets: float) -> str:
    return f"{octets / 1024:.1f} KiB"


def format_report(result: dict[str, Any]) -> str:
    """The report as lines of text."""
    lines = [
        f"platform:     {result['platform']} ({result['machine']})",
        f"python:       {result['implementation']} {result['python']}",
        f"core:         {result['core']}",
    ]
    ext = result["extension"]
    if ext is None:
        lines.append("extension:    not built")
    elif "error" in ext:
        lines.append(f"extension:    {ext['path']}: {ext['error']}")
    else:
        lines += [
            f"extension:    {ext['path']} ({_kib(ext['file'])} on disk)",
            f"  code:       {_kib(ext['code'])} (.text {_kib(ext['text'])})",
            f"  read-only:  {_kib(ext['rodata'])}",
            f"  data:       {_kib(ext['data'])} (.bss included)",
        ]
        if ext["symbols"]:
            share = ext["hot_path_share"]
            lines.append(
                f"  hot path:   {_kib(ext['hot_path_total'])} ({share:.0%} of the code)"
            )
            lines += [
                f"    {part + ':':18}{_kib(size)}"
                for part, size in ext["hot_path"].items()
            ]
        else:
            lines.append("  hot path:   unknown (no symbol table)")
    session = result["session"]
    lines += [
        f"session:      {session['held']} octets after EHLO, beyond the transport"
        f" ({session['transport']} in socket.py)",
        f"buffer:       {result['buffer_size']} octets",
    ]
    if "import" in result:
        cost = result["import"]
        loads = ", ".join(cost["loads"]) or "none of asyncio, email, ssl"
        lines.append(
            f"import:       smtpc and smtpc.SMTP from python -S:"
            f" {cost['seconds'] * 1000:.1f} ms, {_kib(cost['rss'])} (loads {loads})"
        )
    return "\n".join(lines)
