"""A small SMTP sink on loopback, standard library only.

It accepts every command and discards the message content. ``smtpc
footprint`` runs one to have a session to measure, and ``smtpc bench`` runs
one when Postfix's ``smtp-sink`` is not installed, each in a child process
(:func:`spawn`), so that the sink's own memory and CPU time are not the
client's. It offers PIPELINING and answers
every complete command line of one read in a single write, as a pipelining
server does (RFC 2920 §3.2).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

HOST = "127.0.0.1"
_EHLO_REPLY = (
    b"250-sink.localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
    b"250-SIZE 0\r\n250 ENHANCEDSTATUSCODES\r\n"
)
_REPLIES = {
    b"HELO": b"250 sink.localhost\r\n",
    b"MAIL": b"250 2.1.0 Ok\r\n",
    b"RCPT": b"250 2.1.5 Ok\r\n",
    b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"RSET": b"250 2.0.0 Ok\r\n",
    b"NOOP": b"250 2.0.0 Ok\r\n",
    b"QUIT": b"221 2.0.0 Bye\r\n",
}
_END_OF_DATA = b"\r\n.\r\n"
_RECV_SIZE = 65536


def _serve_session(conn: socket.socket) -> None:
    pending = b""
    # In message content: the last octets seen, to find the end marker
    # across reads; None between commands.
    tail: bytes | None = None
    conn.sendall(b"220 sink.localhost ESMTP\r\n")
    while data := conn.recv(_RECV_SIZE):
        out = []
        pending += data
        while pending:
            if tail is not None:
                seen = tail + pending
                end = seen.find(_END_OF_DATA)
                if end < 0:
                    tail, pending = seen[-4:], b""
                    break
                pending, tail = seen[end + 5 :], None
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            eol = pending.find(b"\n")
            if eol < 0:
                break
            verb = pending[:4].upper()
            pending = pending[eol + 1 :]
            if verb == b"EHLO":
                out.append(_EHLO_REPLY)
            else:
                out.append(_REPLIES.get(verb, b"502 5.5.2 Not implemented\r\n"))
            if verb == b"DATA":
                # The content may be empty: "." right after DATA's reply.
                tail = b"\r\n"
            elif verb == b"QUIT":
                conn.sendall(b"".join(out))
                return
        if out:
            conn.sendall(b"".join(out))


class LoopbackSink:
    """The sink in a thread of this process, one thread per session.

    Use as a context manager; ``port`` is the port it listens on.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0))
        self.host = HOST
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._sessions: list[threading.Thread] = []

    def __enter__(self) -> LoopbackSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening and wait for open sessions to end."""
        # shutdown() wakes the thread blocked in accept().
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._thread.is_alive():
            self._thread.join(5)
        for session in self._sessions:
            session.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._session, args=(conn,))
            thread.daemon = True
            self._sessions.append(thread)
            thread.start()

    @staticmethod
    def _session(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A client that goes away mid-session is not the sink's problem.
            with suppress(OSError):
                _serve_session(conn)


@contextmanager
def spawn() -> Iterator[tuple[str, int]]:
    """Run the sink in a child process; yields its ``(host, port)``.

    Raises:
        RuntimeError: the child did not start listening.
    """
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(
        [sys.executable, "-m", "smtpc._sink"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError("the loopback sink did not start")
        yield HOST, int(line)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def main() -> None:
    """Serve until standard input closes; print the port first."""
    sink = LoopbackSink()
    with sink:
        print(sink.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
