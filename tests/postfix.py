"""A private Postfix instance on loopback, for interoperability tests.

The instance has its own configuration, queue and data directories in a fresh
directory under /tmp, listens on 127.0.0.1 only, and can deliver nowhere but to
maildirs of the virtual domain ``example.test`` in that directory: every other
destination goes to Postfix's error transport, and no SMTP client service
exists. It starts once per test run and is stopped at teardown.

Two smtpd services listen: ``port`` with a small ``message_size_limit``, to test
SIZE, and ``large_port`` with a large one, for multi-megabyte messages.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "POSTFIX",
    "POSTFIX_DOMAIN",
    "POSTFIX_LARGE_SIZE_LIMIT",
    "POSTFIX_MAILBOXES",
    "POSTFIX_SIZE_LIMIT",
    "PostfixServer",
    "original_content",
    "postfix_server",
]

POSTFIX = Path("/usr/sbin/postfix")
POSTFIX_DOMAIN = "example.test"
POSTFIX_SIZE_LIMIT = 200_000
POSTFIX_LARGE_SIZE_LIMIT = 32 * 1024 * 1024
# Local parts with a maildir each; any other local part is refused at RCPT.
POSTFIX_MAILBOXES = {
    "alice": "alice/",
    "bob": "bob/",
    "carol": "carol/",
    "sender": "sender/",
    "postmaster": "postmaster/",
    "jösé": "jose/",
}

_HOST = "127.0.0.1"
# Owner of the delivered mail: an account every Debian system has.
_MAIL_USER = "nobody"
_START_TIMEOUT = 30.0

# Header fields smtpd and the virtual delivery agent prepend to each message.
_TRACE_FIELDS = (b"return-path:", b"x-original-to:", b"delivered-to:", b"received:")

_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {directory}/queue
data_directory = {directory}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}

myhostname = mx.{domain}
mydomain = {domain}
myorigin = $mydomain
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = {host}/32

# Nothing may leave the machine: no local or relayed delivery, and every
# destination outside the virtual domain goes to the error transport.
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
relay_domains =
local_transport = error:local delivery is disabled
default_transport = error:outside mail is disabled
relay_transport = error:relaying is disabled
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
# Deliver what the client sent: no header rewriting, no headers added.
local_header_rewrite_clients =

virtual_mailbox_domains = {domain}
virtual_mailbox_base = {directory}/mail
virtual_mailbox_maps = texthash:{directory}/etc/mailboxes
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}

smtputf8_enable = yes
message_size_limit = {size_limit}
smtpd_discard_ehlo_keywords =
biff = no
"""

_MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
{host}:{large_port} inet n - n - - smtpd
  -o message_size_limit={large_limit}
  -o cleanup_service_name=cleanup-large
cleanup unix n - n - 0 cleanup
cleanup-large unix n - n - 0 cleanup
  -o message_size_limit={large_limit}
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


@dataclass(frozen=True)
class PostfixServer:
    """A running private Postfix instance.

    Attributes:
        port: smtpd with ``message_size_limit`` = :data:`POSTFIX_SIZE_LIMIT`.
        large_port: smtpd with :data:`POSTFIX_LARGE_SIZE_LIMIT`.
        directory: holds ``etc``, ``queue``, ``data``, ``mail`` and ``maillog``.
    """

    host: str
    port: int
    large_port: int
    directory: Path

    @property
    def config_directory(self) -> Path:
        return self.directory / "etc"

    @property
    def log_file(self) -> Path:
        return self.directory / "maillog"

    def address(self, local_part: str) -> str:
        """``local_part@example.test``."""
        return f"{local_part}@{POSTFIX_DOMAIN}"

    def maildir(self, local_part: str) -> Path:
        """The maildir of one of :data:`POSTFIX_MAILBOXES`."""
        return self.directory / "mail" / POSTFIX_MAILBOXES[local_part]

    def log(self) -> str:
        """Everything Postfix has logged so far."""
        try:
            return self.log_file.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def messages(self, local_part: str, token: str | bytes) -> list[bytes]:
        """Messages delivered to a mailbox so far that contain ``token``."""
        if isinstance(token, str):
            token = token.encode()
        new = self.maildir(local_part) / "new"
        if not new.is_dir():
            return []
        found = (path.read_bytes() for path in sorted(new.iterdir()))
        return [message for message in found if token in message]

    def wait_for_message(
        self, local_part: str, token: str | bytes, timeout: float = 10.0
    ) -> bytes:
        """Wait until one message containing ``token`` is in the mailbox.

        Returns:
            The message as the virtual delivery agent stored it: LF line
            endings, with Postfix's trace header fields first.
        """
        deadline = time.monotonic() + timeout
        while not (found := self.messages(local_part, token)):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no message with {token!r} for {local_part} after {timeout}s;"
                    f" Postfix log:\n{self.log()[-3000:]}"
                )
            time.sleep(0.05)
        assert len(found) == 1, f"{len(found)} messages with {token!r}"
        return found[0]


def original_content(delivered: bytes) -> bytes:
    """The message content as the client sent it, from a delivered message.

    Removes the header fields Postfix prepends (Return-Path, X-Original-To,
    Delivered-To and the folded Received field) and turns the maildir's LF
    line endings back into CRLF.
    """
    lines = delivered.split(b"\n")
    index = 0
    while index < len(lines) and lines[index].lower().startswith(_TRACE_FIELDS):
        index += 1
        # RFC 5322 §2.2.3: a folded field continues on lines starting with WSP.
        while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
            index += 1
    return b"\r\n".join(lines[index:])


def _free_ports(count: int) -> list[int]:
    """Ports free now, all different: the probes stay bound until all are."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((_HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def _write_config(directory: Path, port: int, large_port: int) -> None:
    user = pwd.getpwnam(_MAIL_USER)
    etc = directory / "etc"
    etc.mkdir()
    main_cf = _MAIN_CF.format(
        directory=directory,
        domain=POSTFIX_DOMAIN,
        host=_HOST,
        uid=user.pw_uid,
        gid=user.pw_gid,
        size_limit=POSTFIX_SIZE_LIMIT,
    )
    (etc / "main.cf").write_text(main_cf)
    master_cf = _MASTER_CF.format(
        host=_HOST,
        port=port,
        large_port=large_port,
        large_limit=POSTFIX_LARGE_SIZE_LIMIT,
    )
    (etc / "master.cf").write_text(master_cf)
    mailboxes = "".join(
        f"{local}@{POSTFIX_DOMAIN} {path}\n"
        for local, path in POSTFIX_MAILBOXES.items()
    )
    (etc / "mailboxes").write_text(mailboxes, "utf-8")
    # Postfix creates what is inside the queue directory, not the directory.
    (directory / "queue").mkdir()
    # The virtual delivery agent creates the maildirs as the mail user.
    mail = directory / "mail"
    mail.mkdir()
    os.chown(mail, user.pw_uid, user.pw_gid)


def _postfix(directory: Path, command: str) -> subprocess.CompletedProcess[str]:
    config = str(directory / "etc")
    return subprocess.run(
        [str(POSTFIX), "-c", config, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _master_pid(directory: Path) -> int | None:
    try:
        return int((directory / "queue" / "pid" / "master.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    # The master is not our child: once it exits, init reaps it, or it lingers
    # as a zombie where no init does.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_greeting(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((_HOST, port), timeout=5) as sock:
                if sock.recv(512).startswith(b"220"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _stop(directory: Path, pid: int | None) -> None:
    """Stop the master and its daemons; abort, then SIGKILL, if it lingers."""
    _postfix(directory, "stop")
    if pid is None or _wait_exit(pid, 15):
        return
    _postfix(directory, "abort")
    if _wait_exit(pid, 5):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    assert _wait_exit(pid, 5), f"Postfix master {pid} did not exit"


@pytest.fixture(scope="session")
def postfix_server() -> Iterator[PostfixServer]:
    """Start a private Postfix instance for the test run; stop it afterwards.

    Skips when Postfix is not installed or the tests do not run as root.
    """
    if not POSTFIX.exists():
        pytest.skip(f"{POSTFIX} is missing: install Debian's postfix package")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root to start its daemons")
    directory = Path(tempfile.mkdtemp(prefix=f"smtpc-postfix-{os.getpid()}-"))
    # Postfix's unprivileged daemons and the mail user must reach inside.
    directory.chmod(0o755)
    port, large_port = _free_ports(2)
    server = PostfixServer(_HOST, port, large_port, directory)
    pid = None
    try:
        _write_config(directory, port, large_port)
        for command in ("check", "start"):
            done = _postfix(directory, command)
            if done.returncode != 0:
                output = done.stdout + done.stderr + server.log()
                pytest.fail(f"postfix {command} failed:\n{output[-3000:]}")
        pid = _master_pid(directory)
        ready = all(_wait_greeting(p, _START_TIMEOUT) for p in (port, large_port))
        if not ready:
            pytest.fail(f"Postfix did not answer; log:\n{server.log()[-3000:]}")
        yield server
    finally:
        _stop(directory, pid or _master_pid(directory))
        shutil.rmtree(directory)
