"""The sans-I/O session: what to send, how to read the replies, in what order.

Every operation is a generator of *steps*. It queues commands on the
emitter and yields :data:`READ` when it needs the next reply; the driver
flushes the emitter, reads bytes until :meth:`Session.next_reply` gives a
reply, and sends that reply back in. :data:`DRAIN` asks an asynchronous
driver to let the transport catch up; :data:`START_TLS` asks the driver to
run the TLS handshake. Blocking and asyncio drivers run the same steps, so
the protocol lives here once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from typing import Any, Final, TypeAlias

from .. import core
from ..errors import LocalProtocolError, RemoteProtocolError, SMTPServerDisconnected
from .commands import parse_extensions
from .replies import Reply, ReplyCode, ReplyReader


class Step(enum.Enum):
    """What an operation needs from its driver before it can go on."""

    READ = "read"
    DRAIN = "drain"
    START_TLS = "start_tls"


READ: Final = Step.READ
DRAIN: Final = Step.DRAIN
START_TLS: Final = Step.START_TLS

Steps: TypeAlias = Generator[Step, Any, Any]


class State(enum.Enum):
    """Where a session is (RFC 5321 §3, §4.1.4)."""

    CONNECTED = "connected"  # waiting for the greeting
    GREETED = "greeted"  # 220 received; EHLO or HELO expected
    READY = "ready"  # EHLO or HELO accepted; no mail transaction
    MAIL = "mail"  # MAIL accepted: RCPT, DATA or BDAT expected
    CLOSED = "closed"


# Commands each state allows (verbs in upper case). A session in GREETED may
# still send MAIL: some servers take it without EHLO, and the reply decides.
_ALLOWED: Final[dict[State, frozenset[str]]] = {
    State.CONNECTED: frozenset(),
    State.GREETED: frozenset({"EHLO", "HELO", "LHLO", "MAIL", "STARTTLS", "AUTH"}),
    State.READY: frozenset({"EHLO", "HELO", "LHLO", "MAIL", "STARTTLS", "AUTH"}),
    State.MAIL: frozenset({"EHLO", "HELO", "LHLO", "RCPT", "DATA", "BDAT"}),
    State.CLOSED: frozenset(),
}
_ANY_TIME: Final = frozenset({"RSET", "NOOP", "VRFY", "EXPN", "HELP", "QUIT"})


class Session:
    """One SMTP session's protocol state, with no I/O of its own.

    Args:
        emitter: the core emitter, whose sink the driver provides.
        lmtp: speak LMTP (RFC 2033): LHLO, and a reply per recipient.
        max_line: longest reply line accepted.
    """

    __slots__ = (
        "emitter",
        "lmtp",
        "reader",
        "state",
        "features",
        "does_esmtp",
        "ehlo_resp",
        "helo_resp",
        "last_reply",
        "tls",
        "on_command",
    )

    def __init__(
        self, emitter: core.Emitter, *, lmtp: bool = False, max_line: int = 8192
    ) -> None:
        self.emitter = emitter
        self.lmtp = lmtp
        self.reader = ReplyReader(max_line=max_line)
        self.state = State.CONNECTED
        self.features: dict[str, str] = {}
        self.does_esmtp = False
        self.ehlo_resp: bytes | None = None
        self.helo_resp: bytes | None = None
        self.last_reply: Reply | None = None
        self.tls = False
        # Called with each command line as it is queued (credentials masked),
        # so that the driver can log it: the engine itself never logs.
        self.on_command: Callable[[bytes], None] | None = None

    def send(
        self,
        line: bytes,
        *,
        limit: int = core.MAX_COMMAND_LINE,
        shown: bytes | None = None,
    ) -> None:
        """Queue one command line; ``shown`` replaces it in the trace."""
        self.emitter.command(line, limit)
        if self.on_command is not None:
            self.on_command(line if shown is None else shown)

    # -- bytes in -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` means the server closed the session."""
        if not data:
            self.state = State.CLOSED
            raise SMTPServerDisconnected("Connection unexpectedly closed")
        self.reader.feed(data)

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        reply = self.reader.next_reply()
        if reply is not None:
            self.last_reply = reply
            if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
                # RFC 5321 §3.8: 421 means the server is closing the session.
                self.state = State.CLOSED
        return reply

    def has_extn(self, keyword: str) -> bool:
        return keyword.lower() in self.features

    # -- state ----------------------------------------------------------------

    def check(self, verb: str) -> None:
        """Refuse a command the current state does not allow, before sending.

        Raises:
            LocalProtocolError: the command is out of order.
        """
        if self.state is State.CLOSED or self.state is State.CONNECTED:
            raise SMTPServerDisconnected("please run connect() first")
        if verb not in _ANY_TIME and verb not in _ALLOWED[self.state]:
            raise LocalProtocolError(
                f"{verb} is not allowed in state {self.state.value}"
            )

    def forget_extensions(self) -> None:
        """Drop what EHLO or HELO told (after STARTTLS, RFC 3207 §4.2)."""
        self.features = {}
        self.does_esmtp = False
        self.ehlo_resp = None
        self.helo_resp = None
        if self.state is not State.CLOSED:
            self.state = State.GREETED

    def after(self, verb: str, reply: Reply) -> None:
        """Move the state on after ``verb``'s reply."""
        if self.state is State.CLOSED:
            return
        if verb in ("EHLO", "HELO", "LHLO"):
            # RFC 5321 §4.1.4: EHLO also ends any mail transaction.
            if reply.code == ReplyCode.COMPLETED:
                self.state = State.READY
        elif verb == "RSET":
            if self.state is State.MAIL:
                self.state = State.READY
        elif verb == "MAIL" and reply.code == ReplyCode.COMPLETED:
            self.state = State.MAIL
        elif verb == "END":
            # §4.1.1.4: the reply after the content ends the transaction,
            # whatever it says.
            self.state = State.READY
        elif verb == "QUIT":
            self.state = State.CLOSED

    # -- operations -----------------------------------------------------------

    def greeting(self) -> Steps:
        """Wait for the greeting (RFC 5321 §4.3.1)."""
        reply: Reply = yield READ
        if reply.code == ReplyCode.SERVICE_READY:
            self.state = State.GREETED
        else:
            self.state = State.CLOSED
        return reply

    def command(self, verb: str, line: bytes, *, check: bool = True) -> Steps:
        """Send one command line and return its reply."""
        if check:
            self.check(verb)
        self.send(line)
        reply: Reply = yield READ
        self.after(verb, reply)
        return reply

    def ehlo(self, name: str, verb: str = "EHLO") -> Steps:
        """EHLO (or LHLO): on 250, keep the extension keywords."""
        self.check(verb)
        self.features = {}
        self.does_esmtp = False
        self.send(verb.encode() + b" " + name.encode("ascii"))
        reply: Reply = yield READ
        self.ehlo_resp = reply.message
        if reply.code == ReplyCode.COMPLETED:
            self.does_esmtp = True
            self.features = parse_extensions(reply.lines[1:])
        self.after(verb, reply)
        return reply

    def helo(self, name: str) -> Steps:
        self.check("HELO")
        self.send(b"HELO " + name.encode("ascii"))
        reply: Reply = yield READ
        self.helo_resp = reply.message
        self.after("HELO", reply)
        return reply

    def starttls(self) -> Steps:
        """STARTTLS (RFC 3207): on 220, hand over to TLS and forget EHLO.

        Bytes the server sent after its 220 and before the handshake are
        refused: they would otherwise pass for replies sent under TLS.
        """
        self.check("STARTTLS")
        self.send(b"STARTTLS")
        reply: Reply = yield READ
        if reply.code != ReplyCode.SERVICE_READY:
            return reply
        if self.reader.pending:
            self.state = State.CLOSED
            raise RemoteProtocolError(
                -1, "server sent data after its 220 reply to STARTTLS"
            )
        yield START_TLS
        self.tls = True
        self.forget_extensions()
        return reply

    def authenticate(
        self,
        mechanism: str,
        respond: Callable[[bytes | None], bytes | None],
        *,
        initial_response_ok: bool = True,
        max_challenges: int = 5,
    ) -> Steps:
        """AUTH (RFC 4954): answer each 334 challenge until a final reply.

        ``respond(None)`` gives the initial response (or None to wait for a
        challenge); ``respond(challenge)`` answers a decoded challenge.

        Raises:
            RemoteProtocolError: more than ``max_challenges`` challenges.
            ValueError: ``respond`` raised it for a challenge; the exchange
                was cancelled with ``*`` first, and ``last_reply`` holds the
                server's answer to that.
        """
        self.check("AUTH")
        line = b"AUTH " + mechanism.encode("ascii")
        first = respond(None) if initial_response_ok else None
        shown = line
        if first is not None:
            line += b" " + (core.b64encode(first) if first else b"=")
            shown += b" ****"
        self.send(line, shown=shown)
        reply: Reply = yield READ
        challenges = 0
        while reply.code == ReplyCode.AUTH_CHALLENGE:
            challenges += 1
            if challenges > max_challenges:
                raise RemoteProtocolError(
                    reply.code,
                    "Server AUTH mechanism infinite loop. Last response: "
                    + repr(reply.as_tuple()),
                )
            try:
                challenge = core.b64decode(reply.message)
            except ValueError:
                # RFC 4954 §4: a challenge we cannot decode is answered "*".
                self.send(b"*")
            else:
                try:
                    answer = respond(challenge)
                except ValueError:
                    # RFC 4954 §4: a mechanism that cannot answer cancels with
                    # "*"; the server's 501 leaves the session usable.
                    self.send(b"*")
                    yield READ
                    raise
                self.send(core.b64encode(answer or b""), shown=b"****")
            reply = yield READ
        return reply

    def quit(self) -> Steps:
        if self.state is State.CLOSED:
            raise SMTPServerDisconnected("please run connect() first")
        self.send(b"QUIT")
        reply: Reply = yield READ
        self.forget_extensions()
        self.state = State.CLOSED
        return reply

    def rset_quietly(self) -> Steps:
        """RSET after a failed transaction; its own failure is swallowed so
        that the caller sees the original one."""
        if self.state is State.CLOSED:
            return None
        try:
            self.send(b"RSET")
            reply: Reply = yield READ
        except SMTPServerDisconnected:
            self.state = State.CLOSED
            return None
        self.after("RSET", reply)
        return reply
