"""The command line: ``smtpc send`` (also ``python -m smtpc send``)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("smtpc.cli")

EXAMPLES = """\
examples:
  # through a local test server that smtpc starts itself (needs smtpc[demo]);
  # the delivered copies land in ./smtpc-demo/new
  smtpc send --local-server smtpc-demo examples/*.eml

  # through your relay, STARTTLS, password from $SMTP_PASSWORD
  smtpc send --server smtp.example.com:587 --tls starttls \\
      --user me@example.com --password-env SMTP_PASSWORD message.eml

  # the message from standard input, envelope given explicitly
  smtpc send --server localhost:25 --from a@example.com --to b@example.org - < msg.eml

exit status: 0 when every recipient of every message was accepted, 1 when
some were refused, 2 on a usage or connection error.
"""


def _version() -> str:
    from . import __version__, core

    return f"smtpc {__version__} (core: {core.IMPLEMENTATION})"


def add_session_options(parser: argparse.ArgumentParser) -> None:
    """TLS and credential options, shared by ``send`` and ``bulk``."""
    parser.add_argument(
        "--tls",
        choices=("none", "starttls", "implicit"),
        default="none",
        help="STARTTLS, implicit TLS (port 465), or none (default)",
    )
    parser.add_argument("--cafile", help="trust the certificates in this file")
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    parser.add_argument("--user", help="authenticate as this user")
    parser.add_argument(
        "--password-env",
        metavar="VAR",
        default="SMTP_PASSWORD",
        help="environment variable holding the password "
        "(default SMTP_PASSWORD; asked for when unset)",
    )
    parser.add_argument(
        "--allow-plaintext-auth",
        action="store_true",
        help="authenticate without TLS to a host other than loopback",
    )


def add_direct_tls_option(parser: argparse.ArgumentParser) -> None:
    """``--direct-tls``, shared by ``send`` and ``bulk``."""
    parser.add_argument(
        "--direct-tls",
        choices=("may", "encrypt", "verify", "none"),
        help="with --direct: STARTTLS when offered, unverified (may, the "
        "default); required, unverified (encrypt); required, the certificate "
        "checked against the MX host name, --cafile trusted too (verify); "
        "never (none)",
    )


def direct_tls(args: argparse.Namespace) -> tuple[str, Any]:
    """The TLS policy and context for ``--direct``, from ``--direct-tls``
    and ``--cafile``.

    Raises:
        ValueError: ``--user``, ``--tls`` or ``--insecure`` with
            ``--direct``; ``--cafile`` without ``--direct-tls verify``.
    """
    if args.user or args.tls != "none" or args.insecure:
        raise ValueError("--direct sends without AUTH; --direct-tls sets its TLS")
    policy = args.direct_tls or "may"
    if args.cafile and policy != "verify":
        raise ValueError("--cafile with --direct needs --direct-tls verify")
    return policy, _tls_context(args) if args.cafile else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtpc", description="A small, fast SMTP client."
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser(
        "send",
        help="send messages (.eml files or standard input)",
        description="Send each message file through an SMTP server. The "
        "envelope comes from the message's From/To/Cc/Bcc headers unless "
        "--from/--to are given.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument(
        "messages",
        nargs="*",
        metavar="FILE",
        help="RFC 5322 message files; - reads standard input. With none, a "
        "message is composed from --subject, --body, --html and --attach",
    )
    where = send.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        metavar="HOST[:PORT]",
        help="the SMTP server (default: localhost:25)",
    )
    where.add_argument(
        "--local-server",
        metavar="MAILDIR",
        type=Path,
        help="start a test SMTP server on loopback that stores "
        "what it receives in MAILDIR, and send through it",
    )
    where.add_argument(
        "--direct",
        action="store_true",
        help="deliver straight to each recipient domain's MX hosts "
        "(needs smtpc[dns]); no AUTH, TLS as --direct-tls says",
    )
    send.add_argument(
        "--dns-server",
        metavar="ADDR[:PORT]",
        help="with --direct: the DNS server to ask (default: the system's)",
    )
    send.add_argument(
        "--smtp-port",
        type=int,
        default=25,
        metavar="PORT",
        help="with --direct: the MX hosts' SMTP port (default 25)",
    )
    add_direct_tls_option(send)
    add_session_options(send)
    send.add_argument(
        "--auth-mechanism",
        metavar="NAME",
        help="AUTH mechanism to use (SCRAM-SHA-256, NTLM, XOAUTH2, "
        "OAUTHBEARER, ...; default: the strongest password mechanism offered)",
    )
    token = send.add_mutually_exclusive_group()
    token.add_argument(
        "--token-env",
        metavar="VAR",
        help="environment variable holding an OAuth access token "
        "(for XOAUTH2, the default, or OAUTHBEARER)",
    )
    token.add_argument(
        "--token-command",
        metavar="CMD",
        help="command whose standard output is a fresh OAuth access token; "
        "run without a shell at each AUTH attempt",
    )
    send.add_argument(
        "--from", dest="from_addr", metavar="ADDRESS", help="reverse-path (MAIL FROM)"
    )
    send.add_argument(
        "--to",
        action="append",
        metavar="ADDRESS",
        help="forward-path (RCPT TO); repeatable",
    )
    compose = send.add_argument_group(
        "composing a message (when no FILE is given; needs --from and --to)"
    )
    compose.add_argument("--subject", help="the Subject header")
    compose.add_argument(
        "--body", metavar="TEXT|@FILE", help="the plain-text body, or a UTF-8 file"
    )
    compose.add_argument(
        "--html", metavar="TEXT|@FILE", help="the HTML body, or a UTF-8 file"
    )
    compose.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="FILE",
        help="attach this file, streamed as it is sent; repeatable",
    )
    send.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each reply (default 60)",
    )
    send.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the session (-vv: every command and reply; credentials are masked)",
    )
    from ._bulk_cli import add_parser as add_bulk

    add_bulk(commands)
    _add_measure_parsers(commands)
    return parser


def _add_measure_parsers(commands: Any) -> None:
    footprint = commands.add_parser(
        "footprint",
        help="print smtpc's code size, session memory and import cost here",
    )
    footprint.add_argument("--json", action="store_true", help="print JSON")
    footprint.add_argument(
        "--no-import", action="store_true", help="skip timing `import smtpc`"
    )
    bench = commands.add_parser(
        "bench",
        help="messages per second, smtpc against smtplib, on loopback",
        description="Send small messages through a sink on loopback "
        "(Postfix's smtp-sink when installed, else a built-in one) with "
        "smtpc and with smtplib, and print both rates and their ratio.",
    )
    bench.add_argument(
        "--messages", type=int, default=1000, help="messages a round (default 1000)"
    )
    bench.add_argument(
        "--size", type=int, default=2048, help="octets a message (default 2048)"
    )
    bench.add_argument(
        "--rounds", type=int, default=3, help="rounds, taking turns (default 3)"
    )
    bench.add_argument(
        "--sink",
        choices=("auto", "smtp-sink", "builtin"),
        default="auto",
        help="the server: Postfix's smtp-sink, a built-in loopback sink, or "
        "smtp-sink when installed (default)",
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
    for parser in (footprint, bench):
        parser.set_defaults(verbose=0)


def _measure(args: argparse.Namespace) -> int:
    import json

    if args.command == "footprint":
        from . import footprint

        result = footprint.report(imports=not args.no_import)
        text = footprint.format_report(result)
    else:
        from . import benchmark

        try:
            result = benchmark.compare(args.messages, args.size, args.rounds, args.sink)
        except (ValueError, RuntimeError, OSError) as exc:
            print(f"smtpc: {exc}", file=sys.stderr)
            return 2
        text = benchmark.format_result(result)
    print(json.dumps(result, indent=2) if args.json else text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    try:
        if args.command == "bulk":
            from ._bulk_cli import run as run_bulk

            return run_bulk(args)
        if args.command in ("footprint", "bench"):
            return _measure(args)
        return _send(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, as other tools do.
        sys.stderr.close()
        return 0


def _send(args: argparse.Namespace) -> int:
    from . import SMTPException

    try:
        if args.direct_tls and not args.direct:
            raise ValueError("--direct-tls goes with --direct")
        if not args.messages:
            if args.direct:
                raise ValueError("--direct sends message files only")
            with _server(args) as (host, port):
                return _send_composed(args, host, port)
        if args.direct:
            return _send_direct(args)
        with _server(args) as (host, port):
            return _send_all(args, host, port)
    except (SMTPException, OSError, ValueError, RuntimeError) as exc:
        print(f"smtpc: {describe(exc)}", file=sys.stderr)
        return 2


def describe(exc: BaseException) -> str:
    """An error as a line for people: a refusal shows its reply."""
    from . import SMTPRecipientsRefused, SMTPResponseException

    if isinstance(exc, SMTPResponseException) and exc.smtp_code > 0:
        text = exc.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"{type(exc).__name__}: {exc.smtp_code} {text}".replace("\n", " ")
    if isinstance(exc, SMTPRecipientsRefused):
        refused = ", ".join(f"{a} ({code})" for a, (code, _) in exc.recipients.items())
        return f"every recipient was refused: {refused}"
    return str(exc) or type(exc).__name__


def split_server(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` as host and port.

    Raises:
        ValueError: the port is not a number from 1 to 65535.
    """
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text}: the port must be a number from 1 to 65535")
    return host, int(port)


@contextmanager
def _server(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    if args.local_server is None:
        default = 465 if args.tls == "implicit" else 25
        yield split_server(args.server or "localhost", default)
        return
    from .demo import LocalServer

    with LocalServer(args.local_server) as server:
        print(
            f"local SMTP server on {server.host}:{server.port}, "
            f"storing messages in {server.maildir}/new"
        )
        yield server.host, server.port


def _tls_context(args: argparse.Namespace) -> Any:
    from . import tls

    if args.insecure:
        return tls.unverified_context()
    context = tls.default_context()
    if args.cafile:
        context.load_verify_locations(args.cafile)
    return context


def _password(args: argparse.Namespace) -> str:
    password = os.environ.get(args.password_env)
    if password is None:
        # Without a terminal, getpass would read standard input, which may
        # be the message itself.
        no_terminal = ValueError(
            f"no password: set ${args.password_env} or run on a terminal"
        )
        if os.name == "posix":
            try:
                open("/dev/tty").close()
            except OSError:
                raise no_terminal from None
        try:
            password = getpass.getpass(f"password for {args.user}: ")
        except EOFError:
            raise no_terminal from None
    return password


def _token(args: argparse.Namespace) -> Callable[[], str]:
    # Read when AUTH starts, never printed or logged.
    def from_env() -> str:
        token = os.environ.get(args.token_env, "").strip()
        if not token:
            raise ValueError(f"environment variable {args.token_env} is not set")
        return token

    def from_command() -> str:
        import shlex
        import subprocess

        done = subprocess.run(
            shlex.split(args.token_command),
            stdout=subprocess.PIPE,
            check=True,
            timeout=60,
        )
        token = done.stdout.decode("utf-8").strip()
        if not token:
            raise ValueError("--token-command printed no token")
        return token

    return from_env if args.token_env else from_command


def _login(client: Any, args: argparse.Namespace) -> None:
    if args.token_env or args.token_command:
        mechanism = args.auth_mechanism or "XOAUTH2"
        client.login(args.user, _token(args), mechanism=mechanism)
    else:
        client.login(args.user, _password(args), mechanism=args.auth_mechanism)


def _check_login(args: argparse.Namespace, host: str) -> None:
    """Refuse a password in clear text to a host other than loopback, before
    anything is read or sent."""
    from .tls import is_loopback

    cleartext = args.tls == "none" and not is_loopback(host)
    if args.user and cleartext and not args.allow_plaintext_auth:
        raise ValueError(
            "refusing to send a password without TLS to a host other than "
            "loopback; use --tls or --allow-plaintext-auth"
        )


def _connect(args: argparse.Namespace, host: str, port: int) -> Any:
    from . import SMTP, SMTP_SSL

    _check_login(args, host)
    client: SMTP
    if args.tls == "implicit":
        client = SMTP_SSL(host, port, timeout=args.timeout, context=_tls_context(args))
    else:
        client = SMTP(host, port, timeout=args.timeout)
    try:
        client.ehlo_or_helo_if_needed()
        if args.tls == "starttls":
            client.starttls(context=_tls_context(args))
            client.ehlo()
        if args.user:
            _login(client, args)
    except BaseException:
        client.close()
        raise
    return client


def envelope_from_header(header: bytes) -> tuple[str | None, list[str]]:
    """The reverse-path and forward-paths that a header section names:
    Sender or From; To, Cc and Bcc. A message that was resent names them in
    its ``Resent-`` fields, as smtplib's ``send_message`` reads them.

    Raises:
        ValueError: more than one block of ``Resent-`` fields.
    """
    from email.parser import BytesHeaderParser
    from email.policy import default
    from email.utils import getaddresses

    from .operations import resent_prefix

    headers = BytesHeaderParser(policy=default).parsebytes(header)
    prefix = resent_prefix(headers)
    sender = headers.get(prefix + "Sender") or headers.get(prefix + "From")
    from_addr = getaddresses([str(sender)])[0][1] if sender else None
    fields = [
        str(v) for f in ("To", "Cc", "Bcc") for v in headers.get_all(prefix + f, [])
    ]
    return from_addr, [a[1] for a in getaddresses(fields) if a[1]]


def _message(args: argparse.Namespace, name: str) -> tuple[str, list[str], Any]:
    """A message file (or standard input for "-") as an envelope and content
    without Bcc fields; the envelope the options give comes first."""
    from .sources import MessageFile, stream_without_bcc

    content: Any
    if name == "-":
        header, content = stream_without_bcc(sys.stdin.buffer)
    else:
        content = MessageFile(name)
        header = content.header()
    from_addr, to_addrs = args.from_addr, args.to
    if from_addr is None or not to_addrs:
        header_from, header_to = envelope_from_header(header)
        from_addr = from_addr or header_from
        to_addrs = to_addrs or header_to
    if from_addr is None or not to_addrs:
        raise ValueError(f"{name}: give --from and --to, or headers")
    return from_addr, list(to_addrs), content


def _send_all(args: argparse.Namespace, host: str, port: int) -> int:
    from . import SMTPException

    # Every message's envelope is read before connecting: a bad one stops
    # the run before anything is sent.
    _check_login(args, host)
    messages = [(name, *_message(args, name)) for name in args.messages]
    client = _connect(args, host, port)
    status = 0
    try:
        for name, from_addr, to_addrs, content in messages:
            try:
                result = client.deliver(from_addr, to_addrs, content)
            except SMTPException as exc:
                print(f"{name}: {describe(exc)}")
                status = 1
                continue
            status = max(status, _report(name, result))
    finally:
        try:
            client.quit()
        except SMTPException:
            client.close()
    return status


def _compose(args: argparse.Namespace) -> Any:
    """The message that --subject, --body, --html and --attach describe."""
    from .mime import Message

    def text(value: str | None) -> str | None:
        if value is None or not value.startswith("@"):
            return value
        return Path(value[1:]).read_text(encoding="utf-8")

    if args.from_addr is None or not args.to:
        raise ValueError("give --from and --to to compose a message")
    body, html = text(args.body), text(args.html)
    message = Message(
        from_addr=args.from_addr,
        to=args.to,
        subject=args.subject,
        text=body if body is not None or html is not None else "",
        html=html,
    )
    for name in args.attach:
        message.attach(name)
    return message


def _send_composed(args: argparse.Namespace, host: str, port: int) -> int:
    from . import SMTPException

    message = _compose(args)
    client = _connect(args, host, port)
    try:
        try:
            result = client.deliver(message.from_addr, message.recipients, message)
        except SMTPException as exc:
            print(f"message: {exc}")
            return 1
        return _report("message", result)
    finally:
        try:
            client.quit()
        except SMTPException:
            client.close()


def _send_direct(args: argparse.Namespace) -> int:
    from .routing import MXResolver, Router, Status

    policy, context = direct_tls(args)
    nameserver, dns_port = None, 53
    if args.dns_server:
        nameserver, dns_port = split_server(args.dns_server, 53)
    resolver = MXResolver(nameserver, nameserver_port=dns_port)
    router = Router(
        resolver,
        port=args.smtp_port,
        timeout=args.timeout,
        tls=policy,
        tls_context=context,
    )
    status = 0
    messages = [(name, *_message(args, name)) for name in args.messages]
    for name, from_addr, to_addrs, content in messages:
        try:
            result = router.deliver(from_addr, to_addrs, content)
        except ImportError as exc:
            raise RuntimeError(str(exc)) from exc
        print(f"{name}:")
        for address, route in result.recipients.items():
            host, reply = route.host, route.reply
            if route.error is not None:
                outcome = str(route.error)
            elif host is not None:
                how = f"with {host.tls}" if host.tls else "in clear text"
                where = f"{host.host} [{host.address}]:{host.port}"
                outcome = f"via {where} {how}: {reply}"
            else:
                outcome = "no host took the message"
            print(f"  {address}: {route.status.value} {outcome}")
            if host is not None and host.tls_fallback:
                print(f"    clear text: {host.tls_fallback}")
            for attempt in route.skipped:
                print(
                    f"    skipped {attempt.host} [{attempt.address}]: {attempt.reason}"
                )
            if route.status is not Status.DELIVERED:
                status = 1
    return status


def _report(name: str, result: Any) -> int:
    """Print one message's outcome; 0 when every recipient accepted it."""
    if result.mail is not None and result.mail.code != 250:
        print(f"{name}: MAIL FROM:<{result.reverse_path}> refused: {result.mail}")
        return 1
    print(f"{name}: {result.final or 'not sent'}")
    for recipient in result.recipients:
        # A recipient accepted at RCPT shares the fate of the content.
        reply = recipient.outcome
        if recipient.accepted:
            reply = result.final or result.data or reply
        if recipient.accepted and result.delivered:
            mark = "accepted"
        elif reply is not None and 400 <= reply.code < 500:
            mark = "DEFERRED"  # a temporary failure: worth sending again
        else:
            mark = "REFUSED"
        print(f"  {recipient.address}: {mark} ({reply})")
    return 0 if result.delivered and not result.refused else 1


if __name__ == "__main__":
    sys.exit(main())
