"""What the blocking and asyncio clients both do, written once.

Multi-command operations are engine steps (see :mod:`smtpc.engine.session`)
that either driver runs; the rest are pure functions that turn the caller's
arguments into an envelope, and a transaction's replies into smtplib's
return value or exception.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from .engine.commands import DSN, mail_params, size_limit
from .engine.replies import Reply, ReplyCode
from .engine.session import Session, Steps
from .engine.transaction import Envelope, TransactionResult
from .errors import (
    SMTPAuthenticationError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupportedError,
    SMTPRecipientsRefused,
    SMTPSenderRefused,
    SMTPServerProofError,
)
from .sources import Source, flatten, to_seven_bit

if TYPE_CHECKING:
    import ssl

    from . import auth as _auth

AuthObject = Callable[..., "str | bytes | None"]

session_log = logging.getLogger("smtpc.session")

# Refusals of a mechanism, not of the credentials (RFC 4954 §6).
_NEXT_MECHANISM = frozenset({504, 534, 538})

_NO_SMTPUTF8 = (
    "One or more source or delivery addresses require internationalized email"
    " support, but the server does not advertise the required SMTPUTF8"
    " capability"
)


def hello(session: Session, name: str, verb: str = "EHLO") -> Steps:
    """EHLO, or HELO when EHLO is refused, unless one was accepted already.

    Raises:
        SMTPHeloError: neither was accepted.
    """
    if session.helo_resp is not None or session.ehlo_resp is not None:
        return None
    reply: Reply = yield from session.ehlo(name, verb)
    if 200 <= reply.code <= 299:
        return None
    if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
        # RFC 5321 §3.8: the session is closed; HELO would go nowhere.
        raise SMTPHeloError(reply.code, reply.message, reply)
    reply = yield from session.helo(name)
    if not 200 <= reply.code <= 299:
        raise SMTPHeloError(reply.code, reply.message, reply)
    return None


def authenticate(
    session: Session,
    mechanism: str,
    respond: Callable[[bytes | None], bytes | None],
    initial_response_ok: bool,
    max_challenges: int,
) -> Steps:
    """One AUTH exchange; returns the final reply's ``(code, text)``.

    Raises:
        SMTPAuthenticationError: the server refused (anything but 235/503).
    """
    reply: Reply = yield from session.authenticate(
        mechanism,
        respond,
        initial_response_ok=initial_response_ok,
        max_challenges=max_challenges,
    )
    if reply.code in (ReplyCode.AUTH_SUCCESSFUL, ReplyCode.BAD_SEQUENCE):
        return reply.as_tuple()
    raise SMTPAuthenticationError(reply.code, reply.message, reply)


def authenticate_with(
    session: Session,
    name: str,
    mechanism: _auth.Mechanism,
    initial_response_ok: bool,
    max_challenges: int,
) -> Steps:
    """One AUTH exchange answered by an :mod:`smtpc.auth` mechanism object.

    Raises:
        SMTPServerProofError: the server did not prove that it knows the
            password (SCRAM).
        SMTPAuthenticationError: the server refused, with the mechanism's
            ``error_detail`` in the message; or sent a challenge the
            mechanism cannot answer, and the exchange was cancelled.
    """
    from . import auth as _auth

    try:
        result: tuple[int, bytes] = yield from authenticate(
            session, name, mechanism.respond, initial_response_ok, max_challenges
        )
    except _auth.ChallengeError as exc:
        reply = session.last_reply
        code = -1 if reply is None else reply.code
        error = (
            SMTPServerProofError
            if isinstance(exc, _auth.ServerProofError)
            else SMTPAuthenticationError
        )
        raise error(code, str(exc), reply) from exc
    except SMTPAuthenticationError as exc:
        exc.detail = getattr(mechanism, "error_detail", None)
        raise
    finish = getattr(mechanism, "finish", None)
    if finish is not None and result[0] == ReplyCode.AUTH_SUCCESSFUL:
        try:
            finish()
        except _auth.ServerProofError as exc:
            raise SMTPServerProofError(result[0], str(exc), session.last_reply) from exc
    return result


def login(
    session: Session,
    mechanisms: Sequence[str],
    auth_step: Callable[[str], Steps],
) -> Steps:
    """Try ``mechanisms`` in order until one is accepted.

    The next mechanism is tried only when the server refused this one as a
    mechanism (RFC 4954 §6: 504 not supported, 534 too weak, 538 needs
    encryption). After any other reply, such as 535 (credentials refused),
    or a cancelled exchange, the password is not offered again in another
    form.

    Raises:
        SMTPNotSupportedError: the server offers no AUTH.
        SMTPException: no mechanism in common.
        SMTPAuthenticationError: the last refusal.
    """
    from . import auth as _auth

    if "auth" not in session.features:
        raise SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    if not mechanisms:
        raise SMTPException("No suitable authentication method found.")
    last: SMTPAuthenticationError | None = None
    for mechanism in mechanisms:
        try:
            code, text = yield from auth_step(mechanism)
        except SMTPAuthenticationError as exc:
            last = exc
            # A cancelled exchange (the server's challenge made no sense, or
            # its SCRAM proof was wrong) is not a reason to weaken either.
            cancelled = isinstance(exc.__cause__, _auth.ChallengeError)
            if exc.smtp_code not in _NEXT_MECHANISM or cancelled:
                break
            continue
        if code in (ReplyCode.AUTH_SUCCESSFUL, ReplyCode.BAD_SEQUENCE):
            return (code, text)
    assert last is not None
    raise last


def mechanisms_for(session: Session) -> list[str]:
    """The AUTH mechanisms to try, strongest first, among those offered."""
    from . import auth as _auth

    return _auth.choose(session.features.get("auth", ""))


def prepare_envelope(
    session: Session,
    from_addr: str,
    recipients: list[str],
    source: Source,
    mail_options: Sequence[str],
    rcpt_options: Sequence[str],
    dsn: DSN | None = None,
    requiretls: bool = False,
) -> Envelope:
    """The envelope for one transaction, with the parameters the content needs.

    A DSN request goes out only when the server offers DSN (RFC 3461 §4);
    otherwise the message is sent without it and a warning is logged.

    Raises:
        SMTPNotSupportedError: an address needs SMTPUTF8, or the content
            8BITMIME, and the server does not offer it; or REQUIRETLS was
            asked for outside TLS or without the server's REQUIRETLS.
        SMTPSenderRefused: the content is larger than the server's SIZE.
    """
    features = session.features
    esmtp = session.does_esmtp
    if not esmtp:
        # smtplib sends no ESMTP parameter to a server that refused EHLO.
        mail_options = rcpt_options = ()
    wants_utf8 = any(o.upper() == "SMTPUTF8" for o in mail_options)
    needs_utf8 = wants_utf8 or not all(a.isascii() for a in (from_addr, *recipients))
    if needs_utf8 and "smtputf8" not in features:
        raise SMTPNotSupportedError(
            "SMTPUTF8 not supported by server" if wants_utf8 else _NO_SMTPUTF8
        )
    if source.eight_bit and "8bitmime" not in features:
        raise SMTPNotSupportedError(
            "message content has 8-bit octets and the server does not offer 8BITMIME"
        )
    limit = size_limit(features)
    if limit and source.size is not None and source.size > limit:
        # RFC 1870 §6.1: what the server's reply to MAIL FROM would be.
        text = b"5.3.4 message size exceeds the server's limit of %d octets" % limit
        raise SMTPSenderRefused(552, text, from_addr)
    params = []
    if esmtp:
        params = mail_params(
            mail_options,
            size=source.size,
            eight_bit=source.eight_bit,
            smtputf8=needs_utf8 and not wants_utf8,
            features=features,
        )
    if requiretls:
        # RFC 8689 §4.1: the message must not go out over a weaker path.
        if not (session.tls and "requiretls" in features):
            raise SMTPNotSupportedError(
                "REQUIRETLS needs a TLS session with a server that offers REQUIRETLS"
            )
        params.append("REQUIRETLS")
    if dsn is not None and "dsn" not in features:
        session_log.warning("server does not offer DSN: sending without it")
        dsn = None
    if dsn is not None:
        params += dsn.mail_params()
    return Envelope(from_addr, recipients, params, rcpt_options, needs_utf8, dsn)


def resent_prefix(headers: Any) -> str:
    """``"Resent-"`` when the header section holds one block of resent fields
    (RFC 5322 §3.6.6), whose addresses then make the envelope, as for
    smtplib's ``send_message``; else ``""``.

    Raises:
        ValueError: more than one block of ``Resent-`` headers.
    """
    resent = headers.get_all("Resent-Date")
    if resent is None:
        return ""
    if len(resent) == 1:
        return "Resent-"
    raise ValueError("message has more than one 'Resent-' header block")


def message_envelope(
    msg: Any,
    from_addr: str | None,
    to_addrs: str | Sequence[str] | None,
    mail_options: Sequence[str],
    has_smtputf8: bool,
    has_8bitmime: bool = True,
) -> tuple[str, str | Sequence[str], bytes, Sequence[str]]:
    """smtplib's ``send_message`` rules: the envelope from the headers
    (``Resent-*`` first), Bcc removed, SMTPUTF8 when an address needs it.
    For a server without 8BITMIME, 8-bit parts are re-encoded to 7 bits.

    Returns:
        ``(from_addr, to_addrs, content, mail_options)``.

    Raises:
        ValueError: more than one block of ``Resent-`` headers, or no From
            (or Sender) field and no ``from_addr``.
        SMTPNotSupportedError: an address needs SMTPUTF8, not offered.
    """
    from email.utils import getaddresses

    prefix = resent_prefix(msg)
    if from_addr is None:
        # RFC 5322 §3.6.2: Sender, when present, names the submitter.
        name = prefix + "Sender" if (prefix + "Sender") in msg else prefix + "From"
        if msg[name] is None:
            # smtplib would send MAIL FROM:<None>.
            raise ValueError(f"the message has no {name} field: give from_addr")
        from_addr = getaddresses([msg[name]])[0][1]
    if to_addrs is None:
        fields = [msg[prefix + n] for n in ("To", "Bcc", "Cc")]
        to_addrs = [a[1] for a in getaddresses([f for f in fields if f])]
    shown = copy.copy(msg)
    del shown["Bcc"]
    del shown["Resent-Bcc"]
    recipients = [to_addrs] if isinstance(to_addrs, str) else to_addrs
    international = not all(a.isascii() for a in (from_addr, *recipients))
    if international:
        if not has_smtputf8:
            raise SMTPNotSupportedError(_NO_SMTPUTF8)
        mail_options = (*mail_options, "SMTPUTF8", "BODY=8BITMIME")
    content = flatten(shown, utf8=international)
    if not (international or has_8bitmime or content.isascii()):
        content = flatten(to_seven_bit(shown))
    return from_addr, to_addrs, content, mail_options


def smtplib_outcome(
    result: TransactionResult, from_addr: str
) -> dict[str, tuple[int, bytes]]:
    """smtplib's return value for a transaction, or the exception it raises."""
    mail = result.mail
    if mail is None or mail.code != ReplyCode.COMPLETED:
        reply = mail or result.data
        code, text = reply.as_tuple() if reply else (-1, b"")
        raise SMTPSenderRefused(code, text, from_addr, reply)
    refused = {
        r.address: r.reply.as_tuple()
        for r in result.recipients
        if r.reply is not None and r.reply.code not in (250, 251)
    }
    rcpt_replies = [r.reply for r in result.recipients if r.reply is not None]
    closed = any(r.code == ReplyCode.SERVICE_NOT_AVAILABLE for r in rcpt_replies)
    if closed or len(refused) == len(result.recipients):
        raise SMTPRecipientsRefused(refused)
    data = result.data
    if data is not None and data.code not in (250, 354):
        raise SMTPDataError(data.code, data.message, data)
    final = result.final
    if final is None:
        # DATA got something other than 354, so no content was sent.
        if data is not None:
            raise SMTPDataError(data.code, data.message, data)
        raise SMTPDataError(-1, b"no reply to the message content")
    lmtp_finals = [r for r in result.recipients if r.final is not None]
    if lmtp_finals:
        # RFC 2033 §4.2: each recipient has its own final reply.
        for r in lmtp_finals:
            if r.final is not None and r.final.code != ReplyCode.COMPLETED:
                refused[r.address] = r.final.as_tuple()
        if not result.delivered:
            first = lmtp_finals[0].final
            assert first is not None
            raise SMTPDataError(first.code, first.message, first)
        return refused
    if final.code != ReplyCode.COMPLETED:
        raise SMTPDataError(final.code, final.message, final)
    return refused


def tls_context(
    context: ssl.SSLContext | None, keyfile: str | None, certfile: str | None
) -> ssl.SSLContext:
    """The caller's context, or a verifying one with an optional client
    certificate."""
    if context is not None:
        if keyfile is not None or certfile is not None:
            raise ValueError(
                "context and keyfile/certfile arguments are mutually exclusive"
            )
        return context
    from .tls import default_context

    context = default_context()
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def local_name() -> str:
    """This host's name for EHLO: its FQDN, or an address literal
    (RFC 5321 §4.1.1.1)."""
    fqdn = socket.getfqdn()
    if "." in fqdn:
        return fqdn
    addr = "127.0.0.1"
    with contextlib.suppress(socket.gaierror):
        addr = socket.gethostbyname(socket.gethostname())
    return f"[{addr}]"


def transaction(
    session: Session,
    from_addr: str,
    to_addrs: str | Sequence[str],
    msg: Any,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    dsn: DSN | None = None,
    requiretls: bool = False,
    *,
    pipelining: bool = True,
    chunking: bool = True,
) -> Steps:
    """One mail transaction as ``deliver()`` runs it: the envelope checked
    against the server's extensions, then MAIL, RCPT..., DATA or BDAT.

    Args:
        pipelining: use PIPELINING when the server offers it.
        chunking: use BDAT when the server offers CHUNKING.

    Returns:
        The :class:`~smtpc.engine.TransactionResult`.

    Raises:
        what :func:`prepare_envelope` raises, before any command is sent.
    """
    from .engine.transaction import run_transaction
    from .sources import open_source

    recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
    mime = sys.modules.get("smtpc.mime")
    if mime is not None and isinstance(msg, mime.Message):
        # A composed message picks encodings the server takes (RFC 6152).
        msg.negotiate(session.features)
    source = open_source(msg)
    envelope = prepare_envelope(
        session,
        from_addr,
        recipients,
        source,
        mail_options,
        rcpt_options,
        dsn,
        requiretls,
    )
    steps = run_transaction(
        session,
        envelope,
        source.chunks,
        chunking=chunking,
        single_chunk=source.single,
    )
    features = session.features
    hidden = None if pipelining else features.pop("pipelining", None)
    try:
        result: TransactionResult = yield from steps
    finally:
        if hidden is not None:
            features["pipelining"] = hidden
    return result


def many(
    session: Session,
    messages: Iterable[tuple[str, str | Sequence[str], Any]],
    done: Callable[[TransactionResult], object],
    *,
    pipelining: bool = True,
    chunking: bool = True,
) -> Steps:
    """Mail transactions back to back for ``(from_addr, to_addrs, msg)``
    triples; with PIPELINING each message's end leads the next one's
    commands (RFC 2920 §3.1). ``done`` gets each result in order.

    Raises:
        what :func:`prepare_envelope` raises, for the message that has it;
        the messages before it are finished and reported first.
    """
    from .engine.transaction import run_many
    from .sources import open_source

    def transactions() -> Iterator[tuple[Envelope, Any, bool]]:
        for from_addr, to_addrs, msg in messages:
            recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
            source = open_source(msg)
            envelope = prepare_envelope(session, from_addr, recipients, source, (), ())
            yield envelope, source.chunks, source.single

    features = session.features
    hidden = None if pipelining else features.pop("pipelining", None)
    try:
        yield from run_many(session, transactions(), done, chunking=chunking)
    finally:
        if hidden is not None:
            features["pipelining"] = hidden
    return None


def log_transaction(host: str, result: TransactionResult) -> None:
    """The INFO line for one finished mail transaction."""
    if session_log.isEnabledFor(logging.INFO):
        final = result.final.code if result.final else None
        session_log.info(
            "%s: final reply %s, %d accepted, %d refused",
            host,
            final,
            len(result.accepted),
            len(result.refused),
        )


def max_line() -> int:
    """The longest reply line accepted.

    Programs patch ``smtplib._MAXLINE`` to accept longer reply lines; the
    same patch on this package is honoured.
    """
    import sys

    return int(getattr(sys.modules[__package__], "_MAXLINE", 8192))


_wire_log = logging.getLogger("smtpc.wire")


class ClientState:
    """What the blocking and asyncio clients share besides the engine:
    smtplib's session attributes, debug output and AUTH answer methods.

    A subclass sets ``_session`` (a :class:`~smtpc.engine.Session`).
    """

    _session: Session
    _host: str
    debuglevel = 0
    user: str | None = None
    password: str | None = None
    _auth_challenge_count = 0

    # -- state smtplib exposes as attributes ----------------------------------

    @property
    def esmtp_features(self) -> dict[str, str]:
        return self._session.features

    @esmtp_features.setter
    def esmtp_features(self, value: dict[str, str]) -> None:
        self._session.features = value

    @property
    def does_esmtp(self) -> bool:
        return self._session.does_esmtp

    @does_esmtp.setter
    def does_esmtp(self, value: bool) -> None:
        self._session.does_esmtp = value

    @property
    def ehlo_resp(self) -> bytes | None:
        return self._session.ehlo_resp

    @ehlo_resp.setter
    def ehlo_resp(self, value: bytes | None) -> None:
        self._session.ehlo_resp = value

    @property
    def helo_resp(self) -> bytes | None:
        return self._session.helo_resp

    @helo_resp.setter
    def helo_resp(self, value: bytes | None) -> None:
        self._session.helo_resp = value

    @property
    def last_reply(self) -> Reply | None:
        """The last reply received, with its enhanced status code."""
        return self._session.last_reply

    def has_extn(self, opt: str) -> bool:
        """Whether the server offers the extension keyword ``opt``."""
        return opt.lower() in self.esmtp_features

    # -- debug output and the wire log ----------------------------------------

    def set_debuglevel(self, debuglevel: int) -> None:
        """Print each command and reply to stderr; with 2, with timestamps.

        Credentials are masked, and message content is never printed.
        """
        self.debuglevel = debuglevel

    def _print_debug(self, *args: object) -> None:
        import sys

        if self.debuglevel > 1:
            import datetime

            now = datetime.datetime.now().time()
            print(now, *args, file=sys.stderr)
        else:
            print(*args, file=sys.stderr)

    def _trace_command(self, line: bytes) -> None:
        if self.debuglevel > 0:
            self._print_debug("send:", repr(line + b"\r\n"))
        if _wire_log.isEnabledFor(logging.DEBUG):
            _wire_log.debug("> %s", line.decode("utf-8", "replace"))

    def _trace_reply(self, reply: Reply) -> None:
        if self.debuglevel > 0:
            code, text = reply.as_tuple()
            self._print_debug(f"reply: retcode ({code}); Msg: {text!a}")
        if _wire_log.isEnabledFor(logging.DEBUG):
            for line in reply.lines:
                _wire_log.debug("< %d %s", reply.code, line.decode("utf-8", "replace"))

    # -- AUTH answers, as smtplib's methods give them --------------------------

    def _responder(
        self, authobject: AuthObject
    ) -> Callable[[bytes | None], bytes | None]:
        """Adapt an smtplib auth object to the engine's ``respond``, keeping
        ``_auth_challenge_count`` as smtplib's ``auth_login`` expects."""

        def respond(challenge: bytes | None) -> bytes | None:
            if challenge is None:
                answer = authobject()
                self._auth_challenge_count = 0 if answer is None else 1
            else:
                self._auth_challenge_count += 1
                answer = authobject(challenge)
            if isinstance(answer, str):
                return answer.encode("utf-8")
            return answer

        return respond

    def _auth_steps(
        self,
        mechanism: str,
        authobject: AuthObject | _auth.Mechanism,
        initial_response_ok: bool,
        max_challenges: int,
    ) -> Steps:
        """One AUTH exchange answered by an smtplib auth object."""
        from . import auth as _auth
        from .tls import is_loopback

        if not self._session.tls and not is_loopback(self._host):
            session_log.warning(
                "AUTH %s over a clear-text session to %s", mechanism, self._host
            )
        self._auth_challenge_count = 0
        if callable(getattr(authobject, "respond", None)):
            # A mechanism object from smtpc.auth rather than a callable.
            mech = cast(_auth.Mechanism, authobject)
            return authenticate_with(
                self._session, mechanism, mech, initial_response_ok, max_challenges
            )
        respond = self._responder(cast(AuthObject, authobject))
        return authenticate(
            self._session, mechanism, respond, initial_response_ok, max_challenges
        )

    def _login_steps(
        self,
        user: str,
        password: _auth.Token,
        initial_response_ok: bool,
        max_challenges: int,
        mechanism: str | _auth.Mechanism | None = None,
    ) -> Steps:
        """``login()``: the mechanism asked for, or each mechanism both sides
        know, strongest first."""
        from . import auth as _auth

        if mechanism is None and not isinstance(password, str):
            raise TypeError(
                "a token callable needs mechanism='XOAUTH2' or 'OAUTHBEARER'"
            )
        self.user = user
        self.password = password if isinstance(password, str) else None

        def auth_step(name: str) -> Steps:
            if mechanism is not None and not isinstance(mechanism, str):
                return self._auth_steps(
                    name, mechanism, initial_response_ok, max_challenges
                )
            # smtplib's auth_<name> methods first, so subclasses keep working.
            method = getattr(self, "auth_" + name.lower().replace("-", "_"), None)
            if method is None:
                method = _auth.create(name, user, password)
            return self._auth_steps(name, method, initial_response_ok, max_challenges)

        if mechanism is None:
            names = mechanisms_for(self._session)
        else:
            name = mechanism if isinstance(mechanism, str) else mechanism.name
            name = name.upper()
            if isinstance(mechanism, str):
                _auth.create(name, user, password)  # refuse bad names up front
            offered = self._session.features.get("auth", "").upper().split()
            if offered and name not in offered:
                raise SMTPException(
                    f"the server does not offer AUTH {name}; it offers "
                    + " ".join(offered)
                )
            names = [name]
        return login(self._session, names, auth_step)

    def auth_cram_md5(self, challenge: bytes | None = None) -> str | None:
        """The CRAM-MD5 answer for ``login()`` credentials."""
        from . import auth as _auth

        mech = _auth.CramMD5(self.user or "", self.password or "")
        answer = mech.respond(challenge)
        return None if answer is None else answer.decode("utf-8")

    def auth_plain(self, challenge: bytes | None = None) -> str:
        """The PLAIN response for ``login()`` credentials (RFC 4616)."""
        return f"\0{self.user}\0{self.password}"

    def auth_login(self, challenge: bytes | None = None) -> str | None:
        """The LOGIN answers: the user name first, then the password."""
        if challenge is None or self._auth_challenge_count < 2:
            return self.user
        return self.password
