"""Direct delivery: find each domain's mail exchangers in the DNS and deliver
to them (RFC 5321 §5, RFC 974, RFC 7505).

Relaying through one server (a smarthost) is what :class:`smtpc.SMTP` does
and stays the default everywhere; this module is used only when a caller
asks for it. Two parts, so that a pool can use the first without the second:

- :class:`MXResolver` turns a domain into an ordered list of
  :class:`Candidate` addresses: MX records by preference, equal preferences
  shuffled, the domain's own addresses when it has no MX (implicit MX),
  and a permanent failure for a null MX. It needs dnspython, the ``dns``
  extra (``pip install smtpc[dns]``), imported when first used.
- :class:`Router` groups the forward-paths by domain and, for each domain,
  tries the candidates in order with the blocking client until one gives a
  definitive answer (a 2xx or 5xx reply to the mail transaction).
  :func:`deliver_direct` is the one-call form.

Address literals (``user@[192.0.2.1]``, ``user@[IPv6:2001:db8::1]``) go to
that address with no DNS query, so they work without dnspython.

Policy choices where the RFCs leave room:

- A host is skipped, and the next one tried, when the connection fails or
  times out, when its greeting is not 220 (4xx, and also 5xx: a host that
  greets with 554 offers no SMTP service, RFC 5321 §3.1, and says nothing
  about the recipients), when neither EHLO nor HELO is accepted, on a 421
  reply anywhere, and when the session is lost before a recipient's fate is
  known. Per recipient, a 4xx reply to MAIL, RCPT or the message content
  also moves that recipient to the next host; a 2xx or 5xx reply is final.
- When every host was skipped, the recipient is *deferred*: a temporary
  failure that the caller may retry later (RFC 5321 §4.5.4.1).
- TLS follows a policy, as a mail transfer agent's does (RFC 3207, RFC
  7435). ``"may"``, the default, is opportunistic: STARTTLS when the host
  offers it, with a context that encrypts but does not verify, since an
  MX certificate cannot be authenticated without DANE or MTA-STS; clear
  text when it is not offered or is refused; and when the handshake fails,
  the session is lost, so the host is reconnected and the message sent in
  clear text. ``"encrypt"`` requires STARTTLS and ``"verify"`` also a
  certificate valid for the MX host name found in the DNS; a host that
  cannot give them is skipped. ``"none"`` never sends STARTTLS. Each
  :class:`Attempt` tells whether its session was TLS.
- The local host is skipped only when the caller names it
  (``local_hosts``): an MX that names one of them, and every MX of equal or
  higher preference, is discarded, as RFC 5321 §5.1 asks of a relay.
  ``skip_loopback=True`` also drops loopback and unspecified addresses,
  which no public mail exchanger should have. Both are off by default, so
  that tests and private networks can run their servers on loopback.
"""

from __future__ import annotations

import enum
import io
import ipaddress
import logging
import random
import tempfile
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .engine.commands import addr_only, encode_path
from .engine.replies import Reply, ReplyCode
from .engine.transaction import TransactionResult
from .errors import (
    SMTPException,
    SMTPNotSupportedError,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from .sources import is_reusable

if TYPE_CHECKING:
    import ssl

    from .client import SMTP

log = logging.getLogger("smtpc.routing")

DNS_EXTRA_HINT = "direct delivery needs dnspython: pip install 'smtpc[dns]'"
# The TLS policies of Router, after the levels mail transfer agents offer.
TLS_POLICIES = ("may", "encrypt", "verify", "none")
# Content held in memory before a one-pass message is spooled to disk.
_SPOOL_MEMORY = 1024 * 1024


def _dns() -> Any:
    """dnspython's resolver module, imported on first use."""
    try:
        import dns.resolver
    except ImportError as exc:
        raise ImportError(DNS_EXTRA_HINT) from exc
    return dns


# --- errors -------------------------------------------------------------------


class RoutingError(SMTPException):
    """The mail exchangers of a domain could not be found.

    Attributes:
        domain: the domain, in ASCII (A-labels).
        permanent: True when retrying later cannot help (no such domain, a
            null MX, no address for any host); False for DNS timeouts and
            server failures.
    """

    def __init__(self, domain: str, message: str, *, permanent: bool) -> None:
        super().__init__(f"{domain}: {message}")
        self.domain = domain
        self.permanent = permanent


class NullMXError(RoutingError):
    """The domain publishes a null MX: it accepts no mail (RFC 7505 §3).

    No connection is made; the failure is permanent (enhanced status code
    5.1.10 in a delivery status notification, RFC 7505 §4.2).
    """

    def __init__(self, domain: str) -> None:
        super().__init__(domain, "null MX: the domain accepts no mail", permanent=True)


# --- resolution ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """One address to try for a domain.

    Attributes:
        host: the mail exchanger's name in ASCII without the final dot; the
            domain itself for an implicit MX; ``[address]`` for a literal.
        address: its IPv6 or IPv4 address, as text.
        preference: the MX preference; None for an implicit MX or a literal.
    """

    host: str
    address: str
    preference: int | None = None


class MXResolver:
    """Finds the candidate addresses of a domain's mail exchangers
    (RFC 5321 §5.1).

    Args:
        nameserver: the DNS server to ask (an IPv4 or IPv6 address); None
            uses the system's resolver configuration.
        nameserver_port: its port.
        timeout: seconds allowed for each DNS query, retries included.
        rng: shuffles MX records of equal preference; pass a seeded
            ``random.Random`` for a repeatable order.
        families: address families to use, in order of preference: ``6``
            for AAAA records, ``4`` for A records.
        local_hosts: names and addresses of this host; an MX naming one of
            them is discarded with every MX of equal or higher preference.
        skip_loopback: discard loopback and unspecified addresses.

    Raises:
        ValueError: a family other than 4 or 6, a bad port or timeout.
    """

    def __init__(
        self,
        nameserver: str | None = None,
        *,
        nameserver_port: int = 53,
        timeout: float = 10.0,
        rng: random.Random | None = None,
        families: Sequence[int] = (6, 4),
        local_hosts: Collection[str] = (),
        skip_loopback: bool = False,
    ) -> None:
        if not families or any(f not in (4, 6) for f in families):
            raise ValueError(f"families must be 4 and/or 6, not {families!r}")
        if not 0 < nameserver_port < 65536:
            raise ValueError(f"bad nameserver port {nameserver_port!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if nameserver is not None:
            ipaddress.ip_address(nameserver)
        self.nameserver = nameserver
        self.nameserver_port = nameserver_port
        self.timeout = timeout
        self.rng = rng or random.Random()
        self.families = tuple(families)
        self.local_hosts = frozenset(_host_key(h) for h in local_hosts)
        self.skip_loopback = skip_loopback
        self._resolver: Any = None

    def __repr__(self) -> str:
        where = self.nameserver or "system resolver"
        return f"<MXResolver {where}:{self.nameserver_port}>"

    def resolver(self) -> Any:
        """The ``dns.resolver.Resolver`` used for queries, made on first use.

        Raises:
            ImportError: dnspython is not installed.
        """
        if self._resolver is None:
            dns = _dns()
            resolver = dns.resolver.Resolver(configure=self.nameserver is None)
            if self.nameserver is not None:
                resolver.nameservers = [self.nameserver]
                resolver.port = self.nameserver_port
            resolver.timeout = self.timeout
            resolver.lifetime = self.timeout
            self._resolver = resolver
        return self._resolver

    def resolve(self, domain: str) -> list[Candidate]:
        """The addresses to try for ``domain``, best first.

        Args:
            domain: a domain name (Unicode or A-labels), or an address
                literal such as ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``.

        Returns:
            The candidates in order: by MX preference, equal preferences
            shuffled, each host's addresses in ``families`` order.

        Raises:
            NullMXError: the domain publishes a null MX.
            RoutingError: no mail exchanger could be found; its
                ``permanent`` attribute tells whether to retry later.
            ValueError: ``domain`` is not a valid domain or literal.
            ImportError: dnspython is missing (not for literals).
        """
        literal = parse_literal(domain)
        if literal is not None:
            return [Candidate(_literal_text(literal), literal)]
        ascii_domain = to_ascii(domain)
        hosts = self._exchangers(ascii_domain)
        candidates: list[Candidate] = []
        temporary: list[str] = []
        for preference, host in hosts:
            try:
                addresses = self._addresses(host)
            except RoutingError as exc:
                log.debug("MX %s of %s skipped: %s", host, ascii_domain, exc)
                if not exc.permanent:
                    temporary.append(host)
                continue
            candidates += [Candidate(host, a, preference) for a in addresses]
        if not candidates:
            raise RoutingError(
                ascii_domain,
                "no address for any mail exchanger",
                permanent=not temporary,
            )
        if log.isEnabledFor(logging.DEBUG):
            shown = ", ".join(
                f"{c.host}[{c.address}] pref {c.preference}" for c in candidates
            )
            log.debug("MX candidates for %s: %s", ascii_domain, shown)
        return candidates

    def _exchangers(self, domain: str) -> list[tuple[int | None, str]]:
        """(preference, host) in the order to try, after RFC 5321 §5.1's rules."""
        dns = _dns()
        try:
            answer = self._query(domain, "MX")
        except dns.resolver.NoAnswer:
            # RFC 5321 §5.1: no MX records, the domain is its own implicit MX.
            log.debug("no MX for %s: trying its address records", domain)
            return [(None, domain)]
        records = [(r.preference, _name_text(r.exchange)) for r in answer]
        # RFC 7505 §3: a null MX ("." as the exchange) means no mail at all.
        # A "." among real records is a broken zone: ignore that record.
        real = [(p, h) for p, h in records if h]
        if not real:
            raise NullMXError(domain)
        real = self._drop_local(domain, real)
        # RFC 5321 §5.1: lowest preference first; equal ones in random order.
        # Sorting first makes the order depend on the rng alone, not on the
        # order the DNS server sent the records in.
        real.sort()
        self.rng.shuffle(real)
        real.sort(key=lambda record: record[0])
        return list(real)

    def _drop_local(
        self, domain: str, records: list[tuple[int, str]]
    ) -> list[tuple[int, str]]:
        # RFC 5321 §5.1: a relay listed as an MX discards itself and every
        # MX of equal or higher preference, or the mail would loop.
        if not self.local_hosts:
            return records
        local = [p for p, h in records if _host_key(h) in self.local_hosts]
        if not local:
            return records
        kept = [(p, h) for p, h in records if p < min(local)]
        if not kept:
            raise RoutingError(
                domain, "the best mail exchanger is this host", permanent=True
            )
        return kept

    def _addresses(self, host: str) -> list[str]:
        """The host's addresses in ``families`` order.

        Raises:
            RoutingError: no address; permanent unless a query failed.
        """
        dns = _dns()
        addresses: list[str] = []
        failures: list[RoutingError] = []
        for family in self.families:
            try:
                answer = self._query(host, "AAAA" if family == 6 else "A")
            except dns.resolver.NoAnswer:
                continue
            except RoutingError as exc:
                failures.append(exc)
                continue
            addresses += [r.address for r in answer if self._usable(r.address)]
        if addresses:
            return addresses
        if any(not f.permanent for f in failures):
            raise next(f for f in failures if not f.permanent)
        raise RoutingError(host, "no usable address record", permanent=True)

    def _usable(self, address: str) -> bool:
        if address in self.local_hosts:
            return False
        if not self.skip_loopback:
            return True
        ip = ipaddress.ip_address(address)
        return not (ip.is_loopback or ip.is_unspecified)

    def _query(self, name: str, rdtype: str) -> Any:
        """One query; NoAnswer passes through, other failures become
        RoutingError."""
        dns = _dns()
        try:
            return self.resolver().resolve(name + ".", rdtype, search=False)
        except dns.resolver.NoAnswer:
            raise
        except dns.resolver.NXDOMAIN:
            raise RoutingError(name, "no such domain", permanent=True) from None
        except dns.resolver.NoNameservers as exc:
            raise RoutingError(
                name, f"DNS server failure for {rdtype}", permanent=False
            ) from exc
        except dns.exception.Timeout as exc:
            raise RoutingError(
                name, f"DNS query for {rdtype} timed out", permanent=False
            ) from exc
        except dns.exception.DNSException as exc:
            raise RoutingError(name, f"DNS error: {exc}", permanent=False) from exc


def _name_text(name: Any) -> str:
    """A dnspython name as lower-case ASCII without the final dot ("" for root)."""
    return str(name.to_text(omit_final_dot=True)).lower().rstrip(".")


def _host_key(host: str) -> str:
    """A host name or address in the form resolve() compares."""
    literal = parse_literal(host)
    if literal is not None:
        return literal
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


def domain_of(address: str) -> str:
    """The domain to route a forward-path by: its domain in ASCII (IDNA), or
    its address literal as written.

    Raises:
        ValueError: the address has no domain.
    """
    local, at, domain = addr_only(address).rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"forward-path {address!r} has no domain")
    return domain if domain.startswith("[") else to_ascii(domain)


def _literal_text(address: str) -> str:
    """The address literal for an address (RFC 5321 §4.1.3)."""
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def parse_literal(domain: str) -> str | None:
    """The address of an address literal, or None for a domain name.

    ``[192.0.2.1]`` gives ``192.0.2.1``; ``[IPv6:2001:db8::1]`` gives
    ``2001:db8::1`` (RFC 5321 §4.1.3).

    Raises:
        ValueError: bracketed text that is not an IPv4 or IPv6 literal.
    """
    if not domain.startswith("["):
        return None
    if not domain.endswith("]"):
        raise ValueError(f"unterminated address literal {domain!r}")
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        raise ValueError(f"unsupported address literal {domain!r}") from None


def to_ascii(domain: str) -> str:
    """A domain name in lower-case ASCII, Unicode labels as A-labels (IDNA).

    IDNA 2008 is used when the ``idna`` package is installed, else IDNA 2003.

    Raises:
        ValueError: not a valid domain name.
    """
    if not domain or domain.startswith(".") or ".." in domain:
        raise ValueError(f"bad domain {domain!r}")
    if domain.isascii():
        labels = domain.lower().rstrip(".").split(".")
        if any(not 0 < len(label) < 64 for label in labels):
            raise ValueError(f"bad domain {domain!r}")
        return ".".join(labels)
    try:
        dns = _dns()
    except ImportError:
        try:
            return domain.encode("idna").decode("ascii").lower().rstrip(".")
        except UnicodeError as exc:
            raise ValueError(f"bad domain {domain!r}: {exc}") from None
    codec = (
        dns.name.IDNA_2008_Practical
        if dns.name.have_idna_2008
        else dns.name.IDNA_2003_Practical
    )
    try:
        return _name_text(dns.name.from_unicode(domain, idna_codec=codec))
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise ValueError(f"bad domain {domain!r}: {exc}") from None


# --- results ------------------------------------------------------------------


class Status(enum.Enum):
    """What became of one forward-path."""

    DELIVERED = "delivered"  # a host accepted the message (2xx)
    FAILED = "failed"  # a permanent failure: a 5xx reply or a DNS answer
    DEFERRED = "deferred"  # a temporary failure: retry later


@dataclass(frozen=True, slots=True)
class Attempt:
    """One host tried for one forward-path.

    Attributes:
        host, address, port: where the session went.
        final: the host gave a definitive answer (2xx or 5xx) for this
            forward-path; False when it was skipped.
        reason: why it was skipped, or which reply was final.
        reply: the reply behind ``reason``, when there was one.
        error: the exception behind ``reason``, when there was one.
        result: the mail transaction, when one was started.
        tls: the TLS protocol version of the session (``"TLSv1.3"``), or
            None when it was in clear text.
        tls_fallback: under the ``"may"`` policy, why the session was in
            clear text though STARTTLS was tried: STARTTLS was refused, or
            the handshake failed and the host was reconnected.
    """

    host: str
    address: str
    port: int
    final: bool
    reason: str
    reply: Reply | None = None
    error: BaseException | None = None
    result: TransactionResult | None = None
    tls: str | None = None
    tls_fallback: str | None = None


@dataclass(slots=True)
class RecipientRoute:
    """How one forward-path was routed, and what became of it.

    Attributes:
        address: the forward-path as the caller gave it.
        domain: its domain in ASCII, or ``[address]`` for a literal.
        attempts: every host tried, in order; the last is final or skipped.
        error: the DNS failure, when no host could be found.
    """

    address: str
    domain: str
    attempts: list[Attempt] = field(default_factory=list)
    error: RoutingError | None = None

    @property
    def host(self) -> Attempt | None:
        """The host that gave the definitive answer, if any."""
        if self.attempts and self.attempts[-1].final:
            return self.attempts[-1]
        return None

    @property
    def skipped(self) -> list[Attempt]:
        """The hosts tried and passed over, with the reason for each."""
        return [a for a in self.attempts if not a.final]

    @property
    def reply(self) -> Reply | None:
        """The reply that decided this forward-path's fate, if any."""
        return self.attempts[-1].reply if self.attempts else None

    @property
    def result(self) -> TransactionResult | None:
        """The final host's mail transaction, if any."""
        host = self.host
        return host.result if host else None

    @property
    def status(self) -> Status:
        if self.error is not None:
            return Status.FAILED if self.error.permanent else Status.DEFERRED
        host = self.host
        if host is None:
            return Status.DEFERRED
        reply = host.reply
        if reply is not None and 200 <= reply.code < 300:
            return Status.DELIVERED
        return Status.FAILED


@dataclass(slots=True)
class RoutingResult:
    """The outcome of a direct delivery, forward-path by forward-path."""

    recipients: dict[str, RecipientRoute] = field(default_factory=dict)

    def _with(self, status: Status) -> list[str]:
        return [a for a, r in self.recipients.items() if r.status is status]

    @property
    def delivered(self) -> list[str]:
        """Forward-paths a mail exchanger accepted."""
        return self._with(Status.DELIVERED)

    @property
    def failed(self) -> list[str]:
        """Forward-paths that failed permanently."""
        return self._with(Status.FAILED)

    @property
    def deferred(self) -> list[str]:
        """Forward-paths that failed for now: retry later."""
        return self._with(Status.DEFERRED)


# --- delivery -----------------------------------------------------------------


@dataclass(slots=True)
class _Path:
    address: str  # as the caller gave it
    wire: str  # what RCPT TO carries
    domain: str  # grouping key: ASCII domain or [literal]
    route: RecipientRoute


class Router:
    """Delivers each message straight to its forward-paths' mail exchangers.

    Args:
        resolver: finds the candidates; a default :class:`MXResolver` (the
            system's DNS configuration) when None.
        port: the SMTP port of every mail exchanger.
        timeout: seconds for connecting and for each reply.
        local_hostname: the name sent with EHLO (default: this host's FQDN).
        max_attempts: the most addresses tried per domain and message; RFC
            5321 §5.1 asks for at least two. None tries them all.
        client_factory: makes the unconnected client for each session
            (default :class:`smtpc.SMTP`); the keywords it gets are
            ``timeout`` and ``local_hostname``.
        tls: the TLS policy, one of :data:`TLS_POLICIES`:

            - ``"may"`` (default): STARTTLS when the host offers it, without
              verifying its certificate; clear text when it is not offered
              or is refused; when the handshake fails, the host is
              reconnected and the message sent in clear text.
            - ``"encrypt"``: STARTTLS is required, the certificate is not
              verified; a host without it is skipped.
            - ``"verify"``: STARTTLS is required and the certificate must be
              valid for the MX host name found in the DNS (the address, for
              an address literal); a host failing either is skipped.
            - ``"none"``: clear text; STARTTLS is never sent.
        tls_context: the context for STARTTLS. The default encrypts without
            verifying for ``"may"`` and ``"encrypt"``, and verifies against
            the system's trusted certificates for ``"verify"``.

    Raises:
        ValueError: a bad port, timeout, ``max_attempts`` or ``tls``; a
            ``tls_context`` with ``tls="none"``, or one that does not verify
            certificates and host names with ``tls="verify"``.
        TypeError: ``tls_context`` is not an ``ssl.SSLContext``.
    """

    def __init__(
        self,
        resolver: MXResolver | None = None,
        *,
        port: int = 25,
        timeout: float = 60.0,
        local_hostname: str | None = None,
        max_attempts: int | None = None,
        client_factory: Callable[..., SMTP] | None = None,
        tls: str = "may",
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._tls = _TLSPolicy(tls, tls_context)
        self._resolver = resolver
        self.port = port
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.max_attempts = max_attempts
        self.client_factory = client_factory
        self.tls = tls
        self.tls_context = tls_context

    @property
    def resolver(self) -> MXResolver:
        if self._resolver is None:
            self._resolver = MXResolver()
        return self._resolver

    def deliver(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: Any,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> RoutingResult:
        """Deliver one message to the mail exchangers of its forward-paths.

        Each domain gets its own mail transaction. A refusal or a failure is
        never raised: the result tells, forward-path by forward-path.

        Args:
            from_addr: the reverse-path ("" for a null reverse-path).
            to_addrs: the forward-paths.
            msg: bytes, an ASCII str, a binary file, an iterable of byte
                chunks or an ``email.message.Message``. A file that cannot
                seek and an iterable are spooled (to disk past 1 MiB), since
                each host tried needs the whole message.
            mail_options, rcpt_options: ESMTP parameters for MAIL and RCPT.

        Returns:
            A :class:`RoutingResult` keyed by forward-path.

        Raises:
            ValueError, TypeError: a bad address or message, before any DNS
                query or connection.
            ImportError: a domain needs DNS and dnspython is missing.
        """
        paths = _parse_paths(from_addr, to_addrs)
        result = RoutingResult({p.address: p.route for p in paths})
        domains: dict[str, list[_Path]] = {}
        for path in paths:
            domains.setdefault(path.domain, []).append(path)
        with _Replay(msg) as replay:
            for domain, group in domains.items():
                self._deliver_domain(
                    domain, group, from_addr, replay, mail_options, rcpt_options
                )
        return result

    def _deliver_domain(
        self,
        domain: str,
        paths: list[_Path],
        from_addr: str,
        replay: _Replay,
        mail_options: Sequence[str],
        rcpt_options: Sequence[str],
    ) -> None:
        try:
            candidates = self.resolver.resolve(domain)
        except RoutingError as exc:
            log.debug("no route to %s: %s", domain, exc)
            for path in paths:
                path.route.error = exc
            return
        if self.max_attempts is not None:
            candidates = candidates[: self.max_attempts]
        pending = paths
        for number, candidate in enumerate(candidates, 1):
            attempts = self._try_host(
                candidate, pending, from_addr, replay, mail_options, rcpt_options
            )
            for path in pending:
                path.route.attempts.append(attempts[path.address])
            skipped = [p for p in pending if not attempts[p.address].final]
            if skipped:
                reasons = sorted({attempts[p.address].reason for p in skipped})
                more = "the next host" if number < len(candidates) else "no more hosts"
                log.warning(
                    "%s [%s]:%d for %s: %s; %s",
                    candidate.host,
                    candidate.address,
                    self.port,
                    domain,
                    "; ".join(reasons),
                    more,
                )
            pending = skipped
            if not pending:
                return

    def _try_host(
        self,
        candidate: Candidate,
        paths: list[_Path],
        from_addr: str,
        replay: _Replay,
        mail_options: Sequence[str],
        rcpt_options: Sequence[str],
    ) -> dict[str, Attempt]:
        """One host for these forward-paths: one session, or two when the
        TLS handshake fails under the "may" policy."""
        args = (candidate, paths, from_addr, replay, mail_options, rcpt_options)
        try:
            return self._session(*args, starttls=self._tls.starttls)
        except _Reconnect as reconnect:
            # The failed handshake left nothing to speak SMTP on; RFC 7435
            # prefers clear text to no delivery, and STARTTLS would only
            # fail again.
            log.warning(
                "%s [%s]:%d: %s; reconnecting in clear text",
                candidate.host,
                candidate.address,
                self.port,
                reconnect.reason,
            )
            fallback = f"{reconnect.reason}; retried on a new clear-text session"
            return self._session(*args, starttls=False, fallback=fallback)

    def _session(
        self,
        candidate: Candidate,
        paths: list[_Path],
        from_addr: str,
        replay: _Replay,
        mail_options: Sequence[str],
        rcpt_options: Sequence[str],
        *,
        starttls: bool,
        fallback: str | None = None,
    ) -> dict[str, Attempt]:
        """One session with one host for these forward-paths.

        Raises:
            _Reconnect: under "may", the TLS handshake failed.
        """
        tls: str | None = None

        def everyone(final: bool, reason: str, **info: Any) -> dict[str, Attempt]:
            return {
                p.address: Attempt(
                    candidate.host,
                    candidate.address,
                    self.port,
                    final,
                    reason,
                    tls=tls,
                    tls_fallback=fallback,
                    **info,
                )
                for p in paths
            }

        client = self._client()
        try:
            # 1. Connect and read the greeting: anything but 220 skips the host.
            try:
                code, _ = client.connect(candidate.address, self.port)
            except OSError as exc:
                return everyone(False, _describe(exc), error=exc)
            if code != ReplyCode.SERVICE_READY:
                reply = client.last_reply
                return everyone(False, f"greeting {_show(reply, code)}", reply=reply)
            try:
                # 2. EHLO, or HELO: refused, the host cannot take mail from us.
                _hello(client, "EHLO")
                # 3. STARTTLS as the policy asks, then EHLO again: what the
                # host said before TLS is forgotten (RFC 3207 §4.2).
                if starttls:
                    tls, note = self._starttls(client, candidate)
                    fallback = fallback or note
                    if tls is not None:
                        _hello(client, "EHLO after STARTTLS")
            except _Skip as skip:
                return everyone(False, skip.reason, reply=skip.reply, error=skip.error)
            # 4. The mail transaction: per forward-path, 2xx or 5xx is final.
            try:
                transaction = client.deliver(
                    from_addr,
                    [p.wire for p in paths],
                    replay.message(),
                    mail_options,
                    rcpt_options,
                )
            except SMTPSenderRefused as exc:
                # The message is over the host's SIZE limit (RFC 1870 §6.1).
                reply = _reply_of(exc)
                return everyone(True, f"MAIL FROM: {exc.smtp_code}", reply=reply)
            except SMTPNotSupportedError as exc:
                return everyone(False, str(exc), error=exc)
            except SMTPServerDisconnected as exc:
                partial = getattr(exc, "result", None)
                if partial is None:
                    return everyone(False, _describe(exc), error=exc)
                return self._judge(candidate, paths, partial, exc, tls, fallback)
            except OSError as exc:
                # A malformed reply, or a transport error: nothing to trust.
                return everyone(False, _describe(exc), error=exc)
            return self._judge(candidate, paths, transaction, None, tls, fallback)
        finally:
            _quit(client)

    def _starttls(
        self, client: SMTP, candidate: Candidate
    ) -> tuple[str | None, str | None]:
        """STARTTLS under the policy.

        Returns:
            ``(version, None)`` once the session is TLS; ``(None, None)``
            when "may" goes on in clear text because STARTTLS is not
            offered, ``(None, why)`` because it was refused.

        Raises:
            _Skip: the host cannot give what the policy requires, or closed
                the session with 421.
            _Reconnect: under "may", the session was lost in the handshake.
        """
        import ssl

        policy = self._tls
        if not policy.offered(client.has_extn("starttls")):
            return None, None
        name = policy.server_name(candidate.host, candidate.address)
        try:
            client.starttls(context=policy.context(), server_hostname=name)
        except OSError as exc:
            connected = client.sock is not None
            return None, policy.failed(exc, connected, client.last_reply)
        sock = client.sock
        version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        log.debug(
            "%s [%s]:%d: STARTTLS, %s",
            candidate.host,
            candidate.address,
            self.port,
            version,
        )
        return version or "TLS", None

    def _client(self) -> SMTP:
        factory = self.client_factory
        if factory is None:
            from .client import SMTP

            factory = SMTP
        return factory(timeout=self.timeout, local_hostname=self.local_hostname)

    def _judge(
        self,
        candidate: Candidate,
        paths: list[_Path],
        result: TransactionResult,
        error: SMTPException | None,
        tls: str | None,
        fallback: str | None,
    ) -> dict[str, Attempt]:
        """Each forward-path's attempt, from the replies of one transaction."""
        attempts: dict[str, Attempt] = {}
        mail = result.mail
        content = result.final
        if content is None and result.data is not None and result.data.code >= 400:
            content = result.data
        for path, recipient in zip(paths, result.recipients, strict=True):
            stage = "MAIL FROM"
            reply = mail
            if mail is not None and mail.code == ReplyCode.COMPLETED:
                stage, reply = "RCPT TO", recipient.reply
                if reply is not None and reply.code in (250, 251):
                    stage, reply = "content", recipient.final or content
            if reply is None:
                why = _describe(error) if error else "no reply"
                final, reason = False, f"{stage}: {why}"
            else:
                final = not 400 <= reply.code < 500
                reason = f"{stage}: {_show(reply, reply.code)}"
            attempts[path.address] = Attempt(
                candidate.host,
                candidate.address,
                self.port,
                final,
                reason,
                reply=reply,
                error=error if reply is None else None,
                result=result,
                tls=tls,
                tls_fallback=fallback,
            )
        return attempts


def deliver_direct(
    from_addr: str,
    to_addrs: str | Sequence[str],
    msg: Any,
    *,
    resolver: MXResolver | None = None,
    port: int = 25,
    timeout: float = 60.0,
    local_hostname: str | None = None,
    max_attempts: int | None = None,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[str] = (),
    tls: str = "may",
    tls_context: ssl.SSLContext | None = None,
) -> RoutingResult:
    """Deliver one message straight to its forward-paths' mail exchangers.

    A shortcut for ``Router(resolver, ...).deliver(...)``; see
    :class:`Router` and :class:`MXResolver` for the arguments. Tests and
    private networks pass ``resolver=MXResolver("127.0.0.1",
    nameserver_port=...)`` and their own ``port``.

    Returns:
        A :class:`RoutingResult` keyed by forward-path.

    Raises:
        ValueError, TypeError: a bad address or message, or a bad ``tls``
            or ``tls_context``, before any DNS query or connection.
        ImportError: a domain needs DNS and dnspython is missing.
    """
    router = Router(
        resolver,
        port=port,
        timeout=timeout,
        local_hostname=local_hostname,
        max_attempts=max_attempts,
        tls=tls,
        tls_context=tls_context,
    )
    return router.deliver(from_addr, to_addrs, msg, mail_options, rcpt_options)


# --- helpers ------------------------------------------------------------------


def _parse_paths(from_addr: str, to_addrs: str | Sequence[str]) -> list[_Path]:
    """Check every address and find its domain, before anything is sent."""
    if not isinstance(from_addr, str):
        raise TypeError("from_addr must be a str")
    if from_addr:
        encode_path(from_addr, smtputf8=True)
    addresses = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
    if not addresses:
        raise ValueError("no forward-path given")
    paths: list[_Path] = []
    seen: set[str] = set()
    for address in addresses:
        if not isinstance(address, str):
            raise TypeError(f"forward-path must be a str, not {type(address).__name__}")
        encode_path(address, smtputf8=True)
        if address in seen:
            continue
        seen.add(address)
        bare = addr_only(address)
        local, at, domain = bare.rpartition("@")
        if not at or not local or not domain:
            raise ValueError(f"forward-path {address!r} has no domain")
        literal = parse_literal(domain)
        if literal is not None:
            key = _literal_text(literal)
            wire = bare
        else:
            key = to_ascii(domain)
            # An ASCII local part with an A-label domain needs no SMTPUTF8.
            wire = f"{local}@{key}" if local.isascii() else bare
        paths.append(_Path(address, wire, key, RecipientRoute(address, key)))
    return paths


class _Replay:
    """Gives the message afresh for each session: bytes as they are, a
    seekable file rewound, anything else spooled once."""

    def __init__(self, msg: Any) -> None:
        self._msg = msg
        self._start: int | None = None
        self._spool: Any = None
        if is_reusable(msg):
            return
        if isinstance(msg, io.TextIOBase):
            raise TypeError("message file must be opened in binary mode")
        if hasattr(msg, "read"):
            if _seekable(msg):
                self._start = msg.tell()
            else:
                self._spool_chunks(iter(lambda: msg.read(64 * 1024), b""))
            return
        if isinstance(msg, Iterable):
            self._spool_chunks(msg)
            return
        raise TypeError(
            "message must be bytes, str, a binary file, an iterable of bytes or an "
            f"email.message.Message, not {type(msg).__name__}"
        )

    def _spool_chunks(self, chunks: Iterable[Any]) -> None:
        # Closed by __exit__, after the last session.
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        self._spool = spool
        for chunk in chunks:
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(
                    f"message chunks must be bytes-like, not {type(chunk).__name__}"
                )
            spool.write(chunk)
        self._msg = spool

    def message(self) -> Any:
        if self._spool is not None:
            self._spool.seek(0)
        elif self._start is not None:
            self._msg.seek(self._start)
        return self._msg

    def __enter__(self) -> _Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._spool is not None:
            self._spool.close()


def _seekable(file: Any) -> bool:
    try:
        return bool(file.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _reply_of(exc: BaseException) -> Reply | None:
    if isinstance(exc, SMTPResponseException):
        return exc.reply
    return None


def _show(reply: Reply | None, code: int) -> str:
    if reply is None:
        return str(code)
    text = reply.lines[0].decode("utf-8", "replace") if reply.lines else ""
    return f"{reply.code} {text}".strip()


def _describe(exc: BaseException) -> str:
    """A short reason for skipping a host."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, SMTPTimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, SMTPResponseException):
        if exc.reply is not None:
            return _show(exc.reply, exc.smtp_code)
        text = exc.smtp_error
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return str(exc) or type(exc).__name__


class _Skip(Exception):
    """The host is skipped, with this reason, before any mail transaction."""

    def __init__(
        self,
        reason: str,
        reply: Reply | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply
        self.error = error


class _Reconnect(Exception):
    """The TLS handshake failed under "may": try the host again in clear text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hello(client: SMTP, label: str) -> None:
    """EHLO, or HELO.

    Raises:
        _Skip: neither was accepted, or the session was lost.
    """
    try:
        client.ehlo_or_helo_if_needed()
    except OSError as exc:
        # After a 421 the session is closed and the error is about that;
        # the reply says more.
        reply = _reply_of(exc) or client.last_reply
        why = _describe(exc)
        if reply is not None and reply.code >= 400:
            why = _show(reply, reply.code)
        raise _Skip(f"{label}: {why}", reply, exc) from exc


class _TLSPolicy:
    """A TLS policy and its STARTTLS context: how :class:`Router` and
    :class:`smtpc.pool.DirectPools` decide, whatever client they drive.

    Raises:
        ValueError, TypeError: as :class:`Router` documents for ``tls`` and
            ``tls_context``.
    """

    __slots__ = ("name", "_context")

    def __init__(self, name: str, context: ssl.SSLContext | None) -> None:
        if not isinstance(name, str) or name not in TLS_POLICIES:
            raise ValueError(f"tls must be one of {', '.join(TLS_POLICIES)}: {name!r}")
        if context is not None:
            _check_context(name, context)
        self.name = name
        self._context = context

    @property
    def starttls(self) -> bool:
        """Whether STARTTLS is sent when offered."""
        return self.name != "none"

    @property
    def required(self) -> bool:
        """Whether a host that cannot do TLS is skipped."""
        return self.name in ("encrypt", "verify")

    def context(self) -> ssl.SSLContext:
        """The caller's context, else one made once: verifying for "verify",
        encrypting only for "may" and "encrypt"."""
        if self._context is None:
            from . import tls

            verify = self.name == "verify"
            self._context = (
                tls.default_context() if verify else tls.unverified_context()
            )
        return self._context

    @staticmethod
    def server_name(host: str, address: str) -> str:
        """The name the certificate is checked against: the MX host name
        found in the DNS, not the address connected to; a literal has no
        name, so its address."""
        return address if host.startswith("[") else host

    def offered(self, offered: bool) -> bool:
        """Whether to send STARTTLS, given whether the host offers it.

        Raises:
            _Skip: it is not offered and the policy requires it.
        """
        if not offered and self.required:
            raise _Skip("STARTTLS not offered")
        return offered

    def failed(self, exc: OSError, connected: bool, last: Reply | None) -> str:
        """Judge a STARTTLS that raised ``exc``; ``connected``: the session
        is still open; ``last``: the last reply received.

        Returns:
            Why the session goes on in clear text, under "may".

        Raises:
            _Skip: the host closed the session with 421, or cannot give what
                the policy requires.
            _Reconnect: under "may", the session was lost in the handshake.
        """
        reply = _reply_of(exc)
        if reply is not None and reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
            raise _Skip(f"STARTTLS: {_show(reply, reply.code)}", reply) from exc
        if connected and reply is not None:
            # A refusal such as 454 leaves the session as it was.
            why = f"STARTTLS refused: {_show(reply, reply.code)}"
            if self.required:
                raise _Skip(why, reply) from exc
            return f"{why}; went on in clear text"
        # The session is lost: in the handshake, once the host said 220.
        agreed = last is not None and last.code == ReplyCode.SERVICE_READY
        what = "TLS handshake failed" if agreed else "STARTTLS"
        why = f"{what}: {_describe(exc)}"
        if self.required:
            raise _Skip(why, reply, exc) from exc
        raise _Reconnect(why) from exc


def _check_context(policy: str, context: Any) -> None:
    """A caller's TLS context must fit the policy."""
    import ssl

    if not isinstance(context, ssl.SSLContext):
        raise TypeError(
            f"tls_context must be an ssl.SSLContext, not {type(context).__name__}"
        )
    if policy == "none":
        raise ValueError("tls_context is of no use with tls='none'")
    if policy == "verify" and (
        context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname
    ):
        raise ValueError(
            "tls='verify' needs a context that verifies certificates and host names"
        )


def _quit(client: SMTP) -> None:
    if client.sock is None:
        return
    try:
        client.quit()
    except (SMTPException, OSError):
        client.close()


__all__ = [
    "Attempt",
    "Candidate",
    "MXResolver",
    "NullMXError",
    "RecipientRoute",
    "Router",
    "RoutingError",
    "RoutingResult",
    "Status",
    "TLS_POLICIES",
    "deliver_direct",
    "parse_literal",
    "to_ascii",
]
