"""``smtpc bulk``: many messages over a few reused sessions, with a report
that a later run can resume from.

Sources: a directory of ``.eml`` files, an mbox file, or a JSON-lines job
file. Each job line is an object with these fields:

- ``id`` (string, optional): names the message in the report; default
  ``line N``. It must stay the same between runs for ``--resume``.
- ``from`` (string): the reverse-path.
- ``to`` (string or list of strings): the forward-paths.
- ``file`` (string): a message file, relative to the job file's directory;
  or ``content`` (string): the message itself, UTF-8 encoded.

The report has one JSON line per message: ``id``, ``from``, ``attempts``
and ``recipients``, a list of ``{"to", "outcome", "code", "enhanced",
"reply", "error"}`` where outcome is ``delivered``, ``refused`` (a 5xx
reply: final) or ``deferred`` (still temporary after the last attempt).
With ``--direct``, each recipient also has ``tls``: the TLS version of the
session that gave its final reply (``"TLSv1.3"``), null in clear text or
when no session did; and ``tls_fallback``: why that session was in clear
text though STARTTLS was tried (``--direct-tls may``), else null.
Each line is written whole and flushed as soon as the message is done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("smtpc.cli")

EXAMPLES = """\
examples:
  # every .eml file in outbox/, envelope from each message's headers
  smtpc bulk --server localhost:2525 --report sent.jsonl outbox/

  # a job file; after an interruption, send only what is still pending
  smtpc bulk --server localhost:2525 --report sent.jsonl jobs.jsonl
  smtpc bulk --server localhost:2525 --resume sent.jsonl jobs.jsonl

  # straight to each domain's mail exchangers, TLS required and verified
  smtpc bulk --direct --direct-tls verify --report sent.jsonl jobs.jsonl

job file: one JSON object a line, {"id": "...", "from": "...", "to": [...],
"file": "path/relative/to/the/job/file.eml"} or with "content" instead of
"file".

exit status: 0 when every recipient was delivered, 1 when some were refused
or deferred, 2 on a usage error, 130 when stopped by Ctrl-C (the report is
complete up to that point; run again with --resume).
"""


def add_parser(commands: Any) -> None:
    """Add ``bulk`` to the subcommands of ``smtpc``."""
    from .cli import add_direct_tls_option, add_session_options

    bulk = commands.add_parser(
        "bulk",
        help="send many messages over reused sessions, with a resumable report",
        description="Send every message of a directory of .eml files, an "
        "mbox or a JSON-lines job file over a few concurrent sessions, "
        "retrying temporary failures, and write one report line per message.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bulk.add_argument("source", type=Path, help="directory, mbox or .jsonl job file")
    bulk.add_argument(
        "--format",
        choices=("auto", "eml", "mbox", "jsonl"),
        default="auto",
        help="what SOURCE is (default: a directory is eml, *.jsonl a job "
        "file, anything else an mbox)",
    )
    bulk.add_argument(
        "--server", metavar="HOST[:PORT]", help="the SMTP server (default localhost:25)"
    )
    bulk.add_argument("--report", type=Path, help="append the report here")
    bulk.add_argument(
        "--resume",
        type=Path,
        metavar="REPORT",
        help="skip recipients this report shows delivered or refused; "
        "the new lines go to --report, or to REPORT itself",
    )
    bulk.add_argument(
        "--from", dest="from_addr", metavar="ADDRESS", help="reverse-path for eml/mbox"
    )
    bulk.add_argument(
        "--to", action="append", metavar="ADDRESS", help="forward-path; repeatable"
    )
    bulk.add_argument(
        "--connections", type=int, default=4, help="sessions at once (default 4)"
    )
    bulk.add_argument(
        "--max-messages",
        type=int,
        default=100,
        help="messages per session before QUIT (default 100)",
    )
    bulk.add_argument(
        "--attempts", type=int, default=5, help="attempts per message (default 5)"
    )
    bulk.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        help="seconds before the first retry, doubled each time (default 1)",
    )
    bulk.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per reply (default 60)"
    )
    add_session_options(bulk)
    bulk.add_argument(
        "--direct",
        action="store_true",
        help="deliver straight to each recipient domain's mail exchangers "
        "(needs smtpc[dns]) instead of through --server",
    )
    bulk.add_argument(
        "--dns-server", metavar="ADDR[:PORT]", help="with --direct: the resolver"
    )
    bulk.add_argument(
        "--smtp-port",
        type=int,
        default=25,
        metavar="PORT",
        help="with --direct: the mail exchangers' port (default 25)",
    )
    add_direct_tls_option(bulk)
    bulk.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="a tqdm bar (needs smtpc[progress]), a plain line every few "
        "seconds, or nothing (default: bar when tqdm is installed)",
    )
    bulk.add_argument("-v", "--verbose", action="count", default=0)


def run(args: argparse.Namespace) -> int:
    """Run ``smtpc bulk``; returns the exit status."""
    report_path = args.report or args.resume
    if report_path is None:
        print("smtpc bulk: give --report (or --resume)", file=sys.stderr)
        return 2
    if args.connections < 1 or args.attempts < 1 or args.max_messages < 1:
        print("smtpc bulk: counts must be at least 1", file=sys.stderr)
        return 2
    try:
        done = _read_report(args.resume) if args.resume else {}
        if _kind(args) == "jsonl":
            # The whole job file is checked before the first message goes.
            for _ in _jsonl(args):
                pass
        messages = _messages(args, done)
        first = next(messages, None)
    except (OSError, ValueError) as exc:
        print(f"smtpc bulk: {exc}", file=sys.stderr)
        return 2
    from .errors import SMTPException

    with open(report_path, "a", encoding="utf-8") as report:
        if first is None:
            return 0
        try:
            return asyncio.run(_send(args, _chain(first, messages), report))
        except (OSError, ValueError, SMTPException) as exc:
            # A bad source line met part-way: the report is complete so far.
            print(f"smtpc bulk: {exc}", file=sys.stderr)
            return 2


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


# --- sources ----------------------------------------------------------------


def _kind(args: argparse.Namespace) -> str:
    if args.format != "auto":
        return str(args.format)
    if args.source.is_dir():
        return "eml"
    return "jsonl" if args.source.suffix in (".jsonl", ".ndjson") else "mbox"


def _messages(args: argparse.Namespace, done: dict[str, set[str]]) -> Iterator[Any]:
    """BulkMessages still to send, read one at a time."""
    from .pool import BulkMessage

    kind = _kind(args)
    if kind == "eml":
        items = _eml(args)
    elif kind == "mbox":
        items = _mbox(args)
    else:
        items = _jsonl(args)
    for message_id, from_addr, to_addrs, content in items:
        to_addrs = [a for a in to_addrs if a not in done.get(message_id, ())]
        if to_addrs:
            yield BulkMessage(from_addr, to_addrs, content, message_id)


def _envelope(
    args: argparse.Namespace, name: str, header: bytes
) -> tuple[str, list[str]]:
    from .cli import envelope_from_header

    from_addr, to_addrs = args.from_addr, args.to
    if from_addr is None or not to_addrs:
        header_from, header_to = envelope_from_header(header)
        from_addr = from_addr or header_from
        to_addrs = to_addrs or header_to
    if from_addr is None or not to_addrs:
        raise ValueError(f"{name}: give --from and --to, or headers")
    return from_addr, list(to_addrs)


def _eml(args: argparse.Namespace) -> Iterator[tuple[str, str, list[str], Any]]:
    from .sources import MessageFile

    directory: Path = args.source
    for path in sorted(directory.glob("*.eml")):
        content = MessageFile(path)
        from_addr, to_addrs = _envelope(args, path.name, content.header())
        yield path.name, from_addr, to_addrs, content


def _mbox(args: argparse.Namespace) -> Iterator[tuple[str, str, list[str], Any]]:
    import io

    from .sources import read_header, without_bcc

    for index, data in enumerate(_mbox_messages(args.source), 1):
        name = str(index)
        body = io.BytesIO(data)
        header = read_header(body)
        from_addr, to_addrs = _envelope(args, f"message {name}", header)
        yield name, from_addr, to_addrs, without_bcc(header) + data[body.tell() :]


def _mbox_messages(path: Path) -> Iterator[bytes]:
    """Each message of an mbox, without its "From " line, ">From " unquoted;
    one message in memory at a time."""
    lines: list[bytes] = []
    started = False
    with path.open("rb") as file:
        for line in file:
            if line.startswith(b"From "):
                if started:
                    yield _mbox_body(lines)
                lines, started = [], True
                continue
            if not started:
                raise ValueError(f"{path}: not an mbox (no 'From ' line first)")
            if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
                line = line[1:]
            lines.append(line)
    if started:
        yield _mbox_body(lines)


def _mbox_body(lines: list[bytes]) -> bytes:
    # The blank line before the next "From " belongs to the mbox format.
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]
    return b"".join(lines)


def _jsonl(args: argparse.Namespace) -> Iterator[tuple[str, str, list[str], Any]]:
    # The whole file is checked before the first message goes: a bad line
    # or a repeated id stops the run before anything is sent. Ids must be
    # unique, since the report and --resume know a message by its id.
    path: Path = args.source
    seen: set[str] = set()
    for where, job in _jobs(path):
        if job[0] in seen:
            raise ValueError(f"{where}: id {job[0]!r} is used twice")
        seen.add(job[0])
    seen.clear()
    for _, job in _jobs(path):
        yield job


def _jobs(path: Path) -> Iterator[tuple[str, tuple[str, str, list[str], Any]]]:
    with path.open(encoding="utf-8") as jobs:
        for number, line in enumerate(jobs, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                job = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if not isinstance(job, dict):
                raise ValueError(f"{where}: not a JSON object")
            message_id = str(job.get("id", f"line {number}"))
            to_addrs = job.get("to")
            if isinstance(to_addrs, str):
                to_addrs = [to_addrs]
            from_addr = job.get("from")
            if not isinstance(from_addr, str) or not isinstance(to_addrs, list):
                raise ValueError(f"{where}: needs 'from' and 'to'")
            if not to_addrs:
                raise ValueError(f"{where}: 'to' names no forward-path")
            if "file" in job:
                content: Any = path.parent / str(job["file"])
            elif isinstance(job.get("content"), str):
                content = job["content"].encode("utf-8")
            else:
                raise ValueError(f"{where}: needs 'file' or 'content'")
            yield where, (message_id, from_addr, [str(a) for a in to_addrs], content)


# --- the report -----------------------------------------------------------------


def _read_report(path: Path) -> dict[str, set[str]]:
    """Message id -> forward-paths already delivered or refused."""
    done: dict[str, set[str]] = {}
    if not path.exists():
        return done
    with path.open(encoding="utf-8") as report:
        for line in report:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                # Only a run killed outright leaves a partial last line.
                continue
            final = {
                r["to"]
                for r in entry.get("recipients", ())
                if r.get("outcome") in ("delivered", "refused")
            }
            done.setdefault(str(entry.get("id")), set()).update(final)
    return done


def _report_line(result: Any, *, direct: bool = False) -> str:
    recipients = []
    for r in result.recipients:
        reply = r.reply
        recipient = {
            "to": r.address,
            "outcome": r.outcome.value,
            "code": reply.code if reply else None,
            "enhanced": reply.enhanced if reply else None,
            "reply": reply.text if reply else None,
            "error": r.error,
        }
        if direct:
            recipient["tls"] = r.tls
            recipient["tls_fallback"] = r.tls_fallback
        recipients.append(recipient)
    entry = {
        "id": result.id,
        "from": result.reverse_path,
        "attempts": result.attempts,
        "recipients": recipients,
    }
    return json.dumps(entry, ensure_ascii=False)


# --- sending ------------------------------------------------------------------


class _Progress:
    """A tqdm bar, or a plain line on stderr every few seconds."""

    def __init__(self, mode: str, total: int | None) -> None:
        self.messages = 0
        self.counts = {"delivered": 0, "refused": 0, "deferred": 0}
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: Any = None
        self._plain = mode == "plain"
        if mode in ("auto", "bar"):
            try:
                from tqdm import tqdm  # type: ignore[import-untyped] # optional, no stubs
            except ImportError:
                self._plain = True
            else:
                self._bar = tqdm(total=total, unit="msg", file=sys.stderr)

    def update(self, result: Any) -> None:
        self.messages += 1
        for r in result.recipients:
            self.counts[r.outcome.value] += 1
        if self._bar is not None:
            self._bar.set_postfix(self.counts, refresh=False)
            self._bar.update(1)
        elif self._plain and time.monotonic() - self._last_line >= 2.0:
            self._print()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._plain:
            self._print()

    def _print(self) -> None:
        self._last_line = now = time.monotonic()
        rate = self.messages / max(now - self._started, 1e-9)
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        print(
            f"{self.messages} messages, {rate:.1f} msg/s; recipients: {counts}",
            file=sys.stderr,
            flush=True,
        )


async def _send(
    args: argparse.Namespace, messages: Iterator[Any], report: IO[str]
) -> int:
    from .pool import BulkSender

    pool = _pool(args)
    sender = BulkSender(pool, max_attempts=args.attempts, backoff=args.backoff)
    total = None
    if _kind(args) == "eml" and not args.resume:
        total = sum(1 for _ in args.source.glob("*.eml"))
    progress = _Progress(args.progress, total)
    interrupted = 0

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted += 1
        if interrupted == 1:
            print(
                "\nsmtpc bulk: stopping after the transactions under way "
                "(Ctrl-C again to abandon them)",
                file=sys.stderr,
            )
        sender.stop(now=interrupted > 1)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_sigint)
    status = 0
    try:
        async with pool:
            async for result in sender.send(messages):
                report.write(_report_line(result, direct=args.direct) + "\n")
                report.flush()
                progress.update(result)
                if result.refused or result.deferred:
                    status = 1
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        progress.close()
    return 130 if interrupted else status


def _pool(args: argparse.Namespace) -> Any:
    from .cli import _password, _tls_context, direct_tls, split_server
    from .pool import DirectPools, Pool
    from .tls import is_loopback

    if args.direct:
        from .routing import MXResolver

        if args.server or args.user:
            raise ValueError("--direct goes to the mail exchangers: no --server/--user")
        policy, context = direct_tls(args)
        nameserver, dns_port = None, 53
        if args.dns_server:
            nameserver, dns_port = split_server(args.dns_server, 53)
        return DirectPools(
            MXResolver(nameserver, nameserver_port=dns_port, timeout=args.timeout),
            port=args.smtp_port,
            size=args.connections,
            max_messages=args.max_messages,
            timeout=args.timeout,
            tls=policy,
            tls_context=context,
        )

    if args.direct_tls:
        raise ValueError("--direct-tls goes with --direct")
    host, port = split_server(args.server or "localhost", 0)
    user = password = None
    if args.user:
        if not (args.tls != "none" or is_loopback(host) or args.allow_plaintext_auth):
            raise ValueError(
                "refusing to send a password without TLS to a host other than "
                "loopback; use --tls or --allow-plaintext-auth"
            )
        user, password = args.user, _password(args)
    return Pool(
        host,
        int(port) if port else 0,
        size=args.connections,
        max_messages=args.max_messages,
        use_tls=args.tls == "implicit",
        starttls=args.tls == "starttls",
        tls_context=_tls_context(args) if args.tls != "none" else None,
        user=user,
        password=password,
        timeout=args.timeout,
    )


__all__ = ["add_parser", "run"]
