"""Direct delivery against a real DNS server and real SMTP servers on loopback.

A small dnspython server answers on 127.0.0.1 from a zone each test fills in;
the mail exchangers are aiosmtpd servers and raw sockets on 127.0.0.2,
127.0.0.3, ... (and ::1 when the host has IPv6), all on one port, so that
the zone's A and AAAA records alone decide where a session goes.
"""

from __future__ import annotations

import io
import logging
import random
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import trustme
from aiosmtpd.controller import Controller
from servers import RecordingHandler, TLSRecordingHandler

from smtpc import cli
from smtpc.routing import (
    MXResolver,
    NullMXError,
    Router,
    RoutingError,
    Status,
    deliver_direct,
)

SENDER = "sender@example.org"
MESSAGE = b"From: sender@example.org\r\nSubject: direct\r\n\r\nHello.\r\n.dot\r\n"


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = _has_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback here")


# --- a DNS server -------------------------------------------------------------


@dataclass
class DNSServer:
    """Answers UDP queries from ``zone``: name -> record type -> record texts.

    A name in ``servfail`` gets SERVFAIL; a name in ``silent`` gets no answer;
    a name missing from ``zone`` gets NXDOMAIN; a known name without the type
    asked for gets an empty answer (NODATA).
    """

    zone: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def add(self, name: str, rdtype: str, *records: str) -> None:
        self.zone.setdefault(name.lower(), {}).setdefault(rdtype, []).extend(records)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        assert not self._thread.is_alive()

    def resolver(self, **options: Any) -> MXResolver:
        options.setdefault("timeout", 1.0)
        options.setdefault("rng", random.Random(1))
        options.setdefault("families", (4,))
        return MXResolver("127.0.0.1", nameserver_port=self.port, **options)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            response = self._answer(dns.message.from_wire(wire))
            if response is not None:
                self.sock.sendto(response.to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif records := self.zone[name].get(rdtype):
            rrset = dns.rrset.from_text_list(name, 300, "IN", rdtype, records)
            response.answer.append(rrset)
        return response


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    server = DNSServer()
    yield server
    server.stop()


# --- mail exchangers ------------------------------------------------------------


class RawHost:
    """A scripted host: sends ``greeting`` (none: stays silent), then one of
    ``replies`` per command line, then closes. Counts its connections and
    keeps the lines it received."""

    def __init__(
        self, address: str, port: int, greeting: bytes | None, replies: list[bytes]
    ) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.listener = socket.create_server((address, port), family=family)
        self.listener.settimeout(0.05)
        self.greeting = greeting
        self.replies = replies
        self.connections = 0
        self.lines: list[bytes] = []
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self.listener.close()
        assert not self._thread.is_alive()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.greeting is None:
                self._held.append(conn)
                continue
            with conn:
                conn.settimeout(2)
                conn.sendall(self.greeting)
                reader = conn.makefile("rb")
                for reply in self.replies:
                    line = reader.readline()
                    if not line:
                        break
                    self.lines.append(line)
                    conn.sendall(reply)
                reader.close()


@dataclass
class Hosts:
    """Mail exchangers on loopback addresses, all on ``port``."""

    port: int
    controllers: list[Controller] = field(default_factory=list)
    raw: list[RawHost] = field(default_factory=list)

    def smtp(
        self,
        address: str,
        handler: RecordingHandler | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> Any:
        """An aiosmtpd server on ``address``, offering STARTTLS with
        ``tls_context`` if given; returns its handler."""
        handler = handler or RecordingHandler()
        controller = Controller(
            handler,
            hostname=address,
            port=self.port,
            ready_timeout=10,
            tls_context=tls_context,
        )
        controller.start()
        self.controllers.append(controller)
        return handler

    def scripted(
        self, address: str, greeting: bytes | None, *replies: bytes
    ) -> RawHost:
        host = RawHost(address, self.port, greeting, list(replies))
        self.raw.append(host)
        return host


def _port_free_everywhere() -> int:
    """A port free on every loopback address the tests use."""
    addresses = [f"127.0.0.{n}" for n in range(2, 9)] + (["::1"] if HAS_IPV6 else [])
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                with socket.socket(family) as check:
                    check.bind((address, port))
        except OSError:
            continue
        return int(port)
    raise RuntimeError("no port free on every loopback address")


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    started = Hosts(_port_free_everywhere())
    yield started
    for controller in started.controllers:
        controller.stop()
    for host in started.raw:
        host.stop()


def _router(dns_server: DNSServer, hosts: Hosts, **options: Any) -> Router:
    resolver = dns_server.resolver(**options.pop("resolver_options", {}))
    options.setdefault("timeout", 2.0)
    return Router(resolver, port=hosts.port, local_hostname="client.test", **options)


# --- resolution -------------------------------------------------------------------


def test_resolve_orders_mx_by_preference_and_host_addresses_by_family(
    dns_server: DNSServer,
) -> None:
    dns_server.add(
        "pref.test.",
        "MX",
        "30 c.pref.test.",
        "10 a.pref.test.",
        "20 b.pref.test.",
    )
    dns_server.add("a.pref.test.", "A", "127.0.0.2")
    dns_server.add("a.pref.test.", "AAAA", "::1")
    dns_server.add("b.pref.test.", "A", "127.0.0.3")
    dns_server.add("c.pref.test.", "AAAA", "2001:db8::3")
    candidates = dns_server.resolver(families=(6, 4)).resolve("pref.test")
    assert [(c.host, c.address, c.preference) for c in candidates] == [
        ("a.pref.test", "::1", 10),
        ("a.pref.test", "127.0.0.2", 10),
        ("b.pref.test", "127.0.0.3", 20),
        ("c.pref.test", "2001:db8::3", 30),
    ]
    ipv4_only = dns_server.resolver(families=(4,)).resolve("pref.test")
    assert [c.address for c in ipv4_only] == ["127.0.0.2", "127.0.0.3"]


def test_equal_preferences_are_shuffled_repeatably_with_a_seed(
    dns_server: DNSServer,
) -> None:
    dns_server.add(
        "eq.test.",
        "MX",
        "10 a.eq.test.",
        "10 b.eq.test.",
        "10 c.eq.test.",
        "5 z.eq.test.",
    )
    for n, name in enumerate("abcz", 2):
        dns_server.add(f"{name}.eq.test.", "A", f"127.0.0.{n}")

    def order(seed: int) -> list[str]:
        resolver = dns_server.resolver(rng=random.Random(seed))
        return [c.host for c in resolver.resolve("eq.test")]

    orders = [order(seed) for seed in range(30)]
    assert all(o[0] == "z.eq.test" for o in orders)
    assert all(sorted(o[1:]) == ["a.eq.test", "b.eq.test", "c.eq.test"] for o in orders)
    assert {o[1] for o in orders} == {"a.eq.test", "b.eq.test", "c.eq.test"}
    assert order(7) == order(7)


def test_resolve_falls_back_to_address_records_without_mx(
    dns_server: DNSServer,
) -> None:
    dns_server.add("implicit.test.", "A", "127.0.0.4")
    dns_server.add("implicit.test.", "TXT", '"no mx here"')
    candidates = dns_server.resolver().resolve("implicit.test")
    assert [(c.host, c.address, c.preference) for c in candidates] == [
        ("implicit.test", "127.0.0.4", None)
    ]
    assert dns_server.queries == [("implicit.test.", "MX"), ("implicit.test.", "A")]


def test_resolve_failures_are_permanent_or_temporary(dns_server: DNSServer) -> None:
    dns_server.add("null.test.", "MX", "0 .")
    dns_server.add("null.test.", "A", "127.0.0.2")
    dns_server.add("txtonly.test.", "TXT", '"nothing"')
    dns_server.add("deadmx.test.", "MX", "10 gone.deadmx.test.")
    dns_server.servfail.add("broken.test.")
    dns_server.silent.add("slow.test.")
    resolver = dns_server.resolver(timeout=0.3)

    with pytest.raises(NullMXError) as null:
        resolver.resolve("null.test")
    assert null.value.permanent
    # RFC 7505: no implicit MX either.
    assert ("null.test.", "A") not in dns_server.queries
    for domain, permanent in [
        ("missing.test", True),
        ("txtonly.test", True),
        ("deadmx.test", True),
        ("broken.test", False),
        ("slow.test", False),
    ]:
        with pytest.raises(RoutingError) as exc:
            resolver.resolve(domain)
        assert exc.value.permanent is permanent, domain
        assert not isinstance(exc.value, NullMXError)


def test_local_host_and_loopback_are_skipped_only_when_asked(
    dns_server: DNSServer,
) -> None:
    dns_server.add("loop.test.", "MX", "10 other.loop.test.", "20 me.loop.test.")
    dns_server.add("self.test.", "MX", "10 me.loop.test.", "20 other.loop.test.")
    dns_server.add("me.loop.test.", "A", "127.0.0.2")
    dns_server.add("other.loop.test.", "A", "127.0.0.3")
    plain = dns_server.resolver()
    assert [c.host for c in plain.resolve("loop.test")] == [
        "other.loop.test",
        "me.loop.test",
    ]
    relay = dns_server.resolver(local_hosts={"ME.loop.test."})
    assert [c.host for c in relay.resolve("loop.test")] == ["other.loop.test"]
    with pytest.raises(RoutingError, match="this host") as exc:
        relay.resolve("self.test")
    assert exc.value.permanent
    with pytest.raises(RoutingError, match="no address") as loop:
        dns_server.resolver(skip_loopback=True).resolve("loop.test")
    assert loop.value.permanent


def test_address_literals_and_idna_domains(dns_server: DNSServer) -> None:
    resolver = dns_server.resolver()
    assert [(c.host, c.address) for c in resolver.resolve("[192.0.2.1]")] == [
        ("[192.0.2.1]", "192.0.2.1")
    ]
    v6 = resolver.resolve("[IPv6:2001:DB8::1]")
    assert [(c.host, c.address) for c in v6] == [("[IPv6:2001:db8::1]", "2001:db8::1")]
    assert dns_server.queries == []
    dns_server.add("xn--bcher-kva.test.", "MX", "10 mx.xn--bcher-kva.test.")
    dns_server.add("mx.xn--bcher-kva.test.", "A", "127.0.0.2")
    assert [c.host for c in resolver.resolve("Bücher.test")] == [
        "mx.xn--bcher-kva.test"
    ]
    for bad in ["[300.1.1.1]", "[IPv6:nope]", "[x:1]", "[192.0.2.1"]:
        with pytest.raises(ValueError):
            resolver.resolve(bad)


# --- delivery ---------------------------------------------------------------------


def test_failover_skips_refused_and_busy_hosts_in_preference_order(
    dns_server: DNSServer, hosts: Hosts, caplog: pytest.LogCaptureFixture
) -> None:
    dns_server.add(
        "fail.test.",
        "MX",
        "40 spare.fail.test.",
        "10 down.fail.test.",
        "30 good.fail.test.",
        "20 busy.fail.test.",
    )
    for name, n in [("down", 5), ("busy", 6), ("good", 3), ("spare", 4)]:
        dns_server.add(f"{name}.fail.test.", "A", f"127.0.0.{n}")
    busy = hosts.scripted("127.0.0.6", b"421 4.3.2 too busy\r\n")
    good = hosts.smtp("127.0.0.3")
    spare = hosts.smtp("127.0.0.4")
    caplog.set_level(logging.DEBUG, logger="smtpc.routing")

    result = _router(dns_server, hosts).deliver(SENDER, ["rcpt@fail.test"], MESSAGE)

    route = result.recipients["rcpt@fail.test"]
    assert route.status is Status.DELIVERED
    assert result.delivered == ["rcpt@fail.test"]
    assert route.host is not None
    assert (route.host.host, route.host.address, route.host.port) == (
        "good.fail.test",
        "127.0.0.3",
        hosts.port,
    )
    assert route.reply is not None and route.reply.code == 250
    assert route.result is not None and route.result.accepted == ["rcpt@fail.test"]
    assert [(a.host, a.reason) for a in route.skipped] == [
        ("down.fail.test", "connection refused"),
        ("busy.fail.test", "greeting 421 4.3.2 too busy"),
    ]
    assert [e.rcpt_tos for e in good.envelopes] == [["rcpt@fail.test"]]
    assert good.envelopes[0].original_content == MESSAGE
    assert spare.envelopes == []
    assert busy.connections == 1
    routing = [r for r in caplog.records if r.name == "smtpc.routing"]
    assert any(
        r.levelno == logging.DEBUG and "MX candidates" in r.message for r in routing
    )
    warnings = [r.message for r in routing if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "down.fail.test" in warnings[0] and "next host" in warnings[0]


def test_first_host_that_answers_takes_the_message(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("ok.test.", "MX", "10 a.ok.test.", "20 b.ok.test.")
    dns_server.add("a.ok.test.", "A", "127.0.0.2")
    dns_server.add("b.ok.test.", "A", "127.0.0.3")
    primary = hosts.smtp("127.0.0.2")
    backup = hosts.smtp("127.0.0.3")
    result = _router(dns_server, hosts).deliver(SENDER, "x@ok.test", MESSAGE)
    assert result.delivered == ["x@ok.test"]
    assert result.recipients["x@ok.test"].skipped == []
    assert len(primary.envelopes) == 1 and backup.envelopes == []


def test_4xx_ehlo_and_silent_greeting_move_to_the_next_host(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add(
        "slowmx.test.",
        "MX",
        "10 mute.slowmx.test.",
        "20 grumpy.slowmx.test.",
        "25 closing.slowmx.test.",
        "30 ok.slowmx.test.",
    )
    dns_server.add("mute.slowmx.test.", "A", "127.0.0.5")
    dns_server.add("grumpy.slowmx.test.", "A", "127.0.0.6")
    dns_server.add("closing.slowmx.test.", "A", "127.0.0.8")
    dns_server.add("ok.slowmx.test.", "A", "127.0.0.7")
    hosts.scripted("127.0.0.5", None)
    closing = hosts.scripted("127.0.0.8", b"220 hi\r\n", b"421 4.3.2 bye\r\n")
    hosts.scripted(
        "127.0.0.6",
        b"220 grumpy\r\n",
        b"451 4.3.2 not now\r\n",
        b"451 4.3.2 not now\r\n",
    )
    ok = hosts.smtp("127.0.0.7")
    router = _router(dns_server, hosts, timeout=0.5)
    result = router.deliver(SENDER, ["r@slowmx.test"], MESSAGE)
    route = result.recipients["r@slowmx.test"]
    assert route.status is Status.DELIVERED
    assert [a.reason for a in route.skipped] == [
        "timed out",
        "EHLO: 451 4.3.2 not now",
        "EHLO: 421 4.3.2 bye",
    ]
    assert closing.connections == 1
    assert route.skipped[1].reply is not None and route.skipped[1].reply.code == 451
    assert [e.rcpt_tos for e in ok.envelopes] == [["r@slowmx.test"]]


def test_per_recipient_4xx_goes_to_the_next_host_and_5xx_is_final(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("mixed.test.", "MX", "10 a.mixed.test.", "20 b.mixed.test.")
    dns_server.add("a.mixed.test.", "A", "127.0.0.2")
    dns_server.add("b.mixed.test.", "A", "127.0.0.3")
    # The primary answers 451 to "defer" and 550 to "refuse" (RecordingHandler).
    primary = hosts.smtp("127.0.0.2")
    backup = hosts.smtp("127.0.0.3", RecordingHandler(refuse_recipients={}))
    recipients = ["ok@mixed.test", "defer@mixed.test", "refuse@mixed.test"]

    result = _router(dns_server, hosts).deliver(SENDER, recipients, MESSAGE)

    assert result.delivered == ["ok@mixed.test", "defer@mixed.test"]
    assert result.failed == ["refuse@mixed.test"]
    assert [e.rcpt_tos for e in primary.envelopes] == [["ok@mixed.test"]]
    assert [e.rcpt_tos for e in backup.envelopes] == [["defer@mixed.test"]]
    deferred = result.recipients["defer@mixed.test"]
    assert [a.host for a in deferred.attempts] == ["a.mixed.test", "b.mixed.test"]
    assert deferred.skipped[0].reason.startswith("RCPT TO: 451")
    refused = result.recipients["refuse@mixed.test"]
    assert refused.host is not None and refused.host.host == "a.mixed.test"
    assert refused.reply is not None and refused.reply.code == 550


def test_421_after_data_fails_over_and_replays_a_one_pass_message(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("replay.test.", "MX", "10 a.replay.test.", "20 b.replay.test.")
    dns_server.add("a.replay.test.", "A", "127.0.0.2")
    dns_server.add("b.replay.test.", "A", "127.0.0.3")
    hosts.smtp("127.0.0.2", RecordingHandler(data_reply="421 4.3.0 shutting down"))
    backup = hosts.smtp("127.0.0.3")
    chunks = (MESSAGE[i : i + 7] for i in range(0, len(MESSAGE), 7))

    result = _router(dns_server, hosts).deliver(SENDER, ["r@replay.test"], chunks)

    route = result.recipients["r@replay.test"]
    assert route.status is Status.DELIVERED
    assert route.skipped[0].reason == "content: 421 4.3.0 shutting down"
    assert backup.envelopes[0].original_content == MESSAGE


def test_5xx_to_the_content_is_final(dns_server: DNSServer, hosts: Hosts) -> None:
    dns_server.add("strict.test.", "MX", "10 a.strict.test.", "20 b.strict.test.")
    dns_server.add("a.strict.test.", "A", "127.0.0.2")
    dns_server.add("b.strict.test.", "A", "127.0.0.3")
    hosts.smtp("127.0.0.2", RecordingHandler(data_reply="554 5.6.0 rejected"))
    backup = hosts.smtp("127.0.0.3")
    message = io.BytesIO(b"preamble" + MESSAGE)
    message.seek(8)
    result = _router(dns_server, hosts).deliver(SENDER, ["r@strict.test"], message)
    assert result.failed == ["r@strict.test"]
    assert result.recipients["r@strict.test"].reply.code == 554  # type: ignore[union-attr]
    assert backup.envelopes == []


def test_null_mx_and_missing_domains_fail_without_any_connection(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("null.test.", "MX", "0 .")
    dns_server.add("null.test.", "A", "127.0.0.2")
    dns_server.servfail.add("broken.test.")
    trap = hosts.scripted("127.0.0.2", b"220 trap\r\n")
    recipients = ["a@null.test", "b@missing.test", "c@broken.test"]

    result = _router(dns_server, hosts).deliver(SENDER, recipients, MESSAGE)

    assert result.failed == ["a@null.test", "b@missing.test"]
    assert result.deferred == ["c@broken.test"]
    null = result.recipients["a@null.test"]
    assert isinstance(null.error, NullMXError) and null.attempts == []
    assert trap.connections == 0


def test_every_host_failing_defers(dns_server: DNSServer, hosts: Hosts) -> None:
    dns_server.add("down.test.", "MX", "10 a.down.test.", "20 b.down.test.")
    dns_server.add("a.down.test.", "A", "127.0.0.5")
    dns_server.add("b.down.test.", "A", "127.0.0.6")
    result = _router(dns_server, hosts).deliver(SENDER, ["r@down.test"], MESSAGE)
    route = result.recipients["r@down.test"]
    assert route.status is Status.DEFERRED and route.host is None
    assert [a.reason for a in route.attempts] == ["connection refused"] * 2
    limited = _router(dns_server, hosts, max_attempts=1)
    again = limited.deliver(SENDER, ["r@down.test"], MESSAGE)
    assert len(again.recipients["r@down.test"].attempts) == 1


def test_implicit_mx_delivers_to_the_domain_address(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("bare.test.", "A", "127.0.0.4")
    server = hosts.smtp("127.0.0.4")
    result = _router(dns_server, hosts).deliver(SENDER, ["r@bare.test"], MESSAGE)
    route = result.recipients["r@bare.test"]
    assert route.host is not None and route.host.host == "bare.test"
    assert [e.rcpt_tos for e in server.envelopes] == [["r@bare.test"]]


@needs_ipv6
def test_ipv6_addresses_come_first_and_ipv4_is_the_fallback(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("dual.test.", "MX", "10 mx.dual.test.", "20 mx2.dual.test.")
    dns_server.add("mx.dual.test.", "AAAA", "::1")
    dns_server.add("mx.dual.test.", "A", "127.0.0.2")
    dns_server.add("mx2.dual.test.", "A", "127.0.0.3")
    v6 = hosts.smtp("::1")
    hosts.smtp("127.0.0.3")
    router = _router(dns_server, hosts, resolver_options={"families": (6, 4)})
    result = router.deliver(SENDER, ["r@dual.test"], MESSAGE)
    route = result.recipients["r@dual.test"]
    assert route.host is not None and route.host.address == "::1"
    assert len(v6.envelopes) == 1
    # Nothing listens on 127.0.0.2: the IPv4 address of the same host is
    # tried next, before the next MX.
    v6_down = _router(dns_server, hosts, resolver_options={"families": (4, 6)})
    result = v6_down.deliver(SENDER, ["s@dual.test"], MESSAGE)
    route = result.recipients["s@dual.test"]
    assert [a.address for a in route.attempts] == ["127.0.0.2", "::1"]
    assert route.status is Status.DELIVERED


def test_idna_domain_is_looked_up_and_sent_as_a_labels(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("xn--bcher-kva.test.", "MX", "10 mx.xn--bcher-kva.test.")
    dns_server.add("mx.xn--bcher-kva.test.", "A", "127.0.0.2")
    server = hosts.smtp("127.0.0.2")
    result = _router(dns_server, hosts).deliver(SENDER, ["leser@bücher.test"], MESSAGE)
    assert result.delivered == ["leser@bücher.test"]
    assert result.recipients["leser@bücher.test"].domain == "xn--bcher-kva.test"
    assert [e.rcpt_tos for e in server.envelopes] == [["leser@xn--bcher-kva.test"]]


def test_address_literals_skip_dns(dns_server: DNSServer, hosts: Hosts) -> None:
    server = hosts.smtp("127.0.0.3")
    recipients = ["a@[127.0.0.3]"]
    if HAS_IPV6:
        v6 = hosts.smtp("::1")
        recipients.append("b@[IPv6:::1]")
    result = deliver_direct(
        SENDER,
        recipients,
        MESSAGE,
        resolver=dns_server.resolver(),
        port=hosts.port,
        timeout=2.0,
    )
    assert result.delivered == recipients
    assert dns_server.queries == []
    assert [e.rcpt_tos for e in server.envelopes] == [["a@[127.0.0.3]"]]
    route = result.recipients["a@[127.0.0.3]"]
    assert route.host is not None and route.host.host == "[127.0.0.3]"
    if HAS_IPV6:
        assert [e.rcpt_tos for e in v6.envelopes] == [["b@[IPv6:::1]"]]


def test_each_domain_gets_its_own_transaction(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("one.test.", "MX", "10 mx.one.test.")
    dns_server.add("two.test.", "MX", "10 mx.two.test.")
    dns_server.add("mx.one.test.", "A", "127.0.0.2")
    dns_server.add("mx.two.test.", "A", "127.0.0.3")
    one = hosts.smtp("127.0.0.2")
    two = hosts.smtp("127.0.0.3")
    recipients = ["a@one.test", "b@TWO.test", "c@one.test"]
    # A file is rewound to where it stood for each transaction.
    message = io.BytesIO(b"skipped" + MESSAGE)
    message.seek(7)
    result = _router(dns_server, hosts).deliver(SENDER, recipients, message)
    assert sorted(result.delivered) == sorted(recipients)
    assert [e.original_content for e in one.envelopes + two.envelopes] == [MESSAGE] * 2
    assert [sorted(e.rcpt_tos) for e in one.envelopes] == [["a@one.test", "c@one.test"]]
    assert [e.rcpt_tos for e in two.envelopes] == [["b@two.test"]]


def test_bad_input_raises_before_any_query(dns_server: DNSServer) -> None:
    router = Router(dns_server.resolver(), port=2525)
    for recipients in [[], ["no-domain"], ["a@[300.1.1.1]"], ["a@b.test\r\nDATA"]]:
        with pytest.raises(ValueError):
            router.deliver(SENDER, recipients, MESSAGE)
    with pytest.raises(ValueError):
        router.deliver("a\nb@x.test", ["r@b.test"], MESSAGE)
    with pytest.raises(TypeError):
        router.deliver(SENDER, ["r@b.test"], 42)
    with pytest.raises(TypeError):
        router.deliver(SENDER, ["r@b.test"], io.StringIO("text"))
    with pytest.raises(ValueError):
        MXResolver(families=(5,))
    with pytest.raises(ValueError):
        Router(port=0)
    assert dns_server.queries == []


def test_missing_dnspython_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, hosts: Hosts
) -> None:
    monkeypatch.setitem(sys.modules, "dns", None)
    monkeypatch.setitem(sys.modules, "dns.resolver", None)
    with pytest.raises(ImportError, match=r"smtpc\[dns\]"):
        MXResolver("127.0.0.1").resolve("example.test")
    # Address literals need no DNS.
    server = hosts.smtp("127.0.0.2")
    result = deliver_direct(SENDER, ["a@[127.0.0.2]"], MESSAGE, port=hosts.port)
    assert result.delivered == ["a@[127.0.0.2]"] and len(server.envelopes) == 1


# --- TLS policies -------------------------------------------------------------------

# Names on the mail exchangers' certificate; "wrong.verify.test" is left out.
MX_CERT_NAMES = ("mx.tls.test", "mx.enc.test", "good.verify.test", "127.0.0.4")
STARTTLS_EHLO = b"250-mx.test\r\n250 STARTTLS\r\n"


@pytest.fixture(scope="module")
def mx_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """Server context with a certificate for MX_CERT_NAMES."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert(*MX_CERT_NAMES).configure_cert(context)
    return context


def _broken_tls_context() -> ssl.SSLContext:
    """A server context with no certificate: every handshake fails."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


def test_may_uses_starttls_when_offered_and_ehlos_again(
    dns_server: DNSServer, hosts: Hosts, mx_tls_context: ssl.SSLContext
) -> None:
    dns_server.add("tls.test.", "MX", "10 mx.tls.test.")
    dns_server.add("mx.tls.test.", "A", "127.0.0.2")
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_tls_context)

    router = _router(dns_server, hosts)
    assert router.tls == "may"
    result = router.deliver(SENDER, ["r@tls.test"], MESSAGE)

    route = result.recipients["r@tls.test"]
    assert route.status is Status.DELIVERED
    assert route.host is not None
    version = route.host.tls
    assert version is not None and version.startswith("TLSv1.")
    assert route.host.tls_fallback is None
    # What the server saw: one handshake, EHLO again under TLS (RFC 3207
    # §4.2), and the mail transaction under TLS.
    assert server.handshakes == 1
    assert server.ehlo_tls == [None, version]
    assert server.envelope_tls == [version]
    assert server.envelopes[0].original_content == MESSAGE


def test_may_stays_in_clear_text_without_starttls(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("plain.test.", "MX", "10 mx.plain.test.")
    dns_server.add("mx.plain.test.", "A", "127.0.0.2")
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler())
    result = _router(dns_server, hosts).deliver(SENDER, ["r@plain.test"], MESSAGE)
    route = result.recipients["r@plain.test"]
    assert route.status is Status.DELIVERED
    assert route.host is not None
    assert (route.host.tls, route.host.tls_fallback) == (None, None)
    assert server.ehlo_tls == [None]
    assert server.envelope_tls == [None]
    assert [e.rcpt_tos for e in server.envelopes] == [["r@plain.test"]]


def test_may_reconnects_in_clear_text_after_a_failed_handshake(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add(
        "fallback.test.", "MX", "10 mx.fallback.test.", "20 b.fallback.test."
    )
    dns_server.add("mx.fallback.test.", "A", "127.0.0.2")
    dns_server.add("b.fallback.test.", "A", "127.0.0.3")
    broken = hosts.smtp("127.0.0.2", TLSRecordingHandler(), _broken_tls_context())
    backup = hosts.smtp("127.0.0.3", TLSRecordingHandler())

    result = _router(dns_server, hosts).deliver(SENDER, ["r@fallback.test"], MESSAGE)

    route = result.recipients["r@fallback.test"]
    assert route.status is Status.DELIVERED
    # The same host, on a second session: one attempt, in clear text.
    assert [a.host for a in route.attempts] == ["mx.fallback.test"]
    attempt = route.attempts[0]
    assert attempt.tls is None
    assert attempt.tls_fallback is not None
    assert attempt.tls_fallback.startswith("TLS handshake failed: ")
    assert attempt.tls_fallback.endswith("retried on a new clear-text session")
    assert attempt.reason == "content: 250 OK"
    # The message arrived once, in clear text; the second session sent no
    # STARTTLS, so it has one EHLO like the first.
    assert broken.handshakes == 0
    assert broken.ehlo_tls == [None, None]
    assert broken.envelope_tls == [None]
    assert [e.original_content for e in broken.envelopes] == [MESSAGE]
    assert backup.ehlo_tls == [] and backup.envelopes == []


def test_may_goes_on_in_the_same_session_when_starttls_is_refused(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    dns_server.add("refusing.test.", "MX", "10 mx.refusing.test.")
    dns_server.add("mx.refusing.test.", "A", "127.0.0.2")
    host = hosts.scripted(
        "127.0.0.2",
        b"220 mx.refusing.test\r\n",
        STARTTLS_EHLO,
        b"454 4.7.0 TLS not available\r\n",
        b"250 2.1.0 ok\r\n",
        b"250 2.1.5 ok\r\n",
        b"354 go on\r\n",
        *[b""] * MESSAGE.count(b"\n"),
        b"250 2.0.0 queued\r\n",
        b"221 2.0.0 bye\r\n",
    )
    result = _router(dns_server, hosts).deliver(SENDER, ["r@refusing.test"], MESSAGE)
    route = result.recipients["r@refusing.test"]
    assert route.status is Status.DELIVERED
    assert route.host is not None and route.host.tls is None
    assert route.host.tls_fallback == (
        "STARTTLS refused: 454 4.7.0 TLS not available; went on in clear text"
    )
    assert host.connections == 1
    commands = [line.split(b":")[0].split()[0] for line in host.lines[:4]]
    assert commands == [b"EHLO", b"STARTTLS", b"MAIL", b"RCPT"]
    assert host.lines[-1] == b"QUIT\r\n"


def test_encrypt_skips_hosts_that_cannot_encrypt(
    dns_server: DNSServer, hosts: Hosts, mx_tls_context: ssl.SSLContext
) -> None:
    dns_server.add(
        "enc.test.",
        "MX",
        "10 plain.enc.test.",
        "20 broken.enc.test.",
        "30 refusing.enc.test.",
        "40 mx.enc.test.",
    )
    for name, n in [("plain", 2), ("broken", 3), ("refusing", 5), ("mx", 6)]:
        dns_server.add(f"{name}.enc.test.", "A", f"127.0.0.{n}")
    plain = hosts.smtp("127.0.0.2", TLSRecordingHandler())
    # Agrees to STARTTLS, then closes instead of a handshake.
    broken = hosts.scripted(
        "127.0.0.3", b"220 broken\r\n", STARTTLS_EHLO, b"220 2.0.0 go ahead\r\n"
    )
    refusing = hosts.scripted(
        "127.0.0.5",
        b"220 refusing\r\n",
        STARTTLS_EHLO,
        b"454 4.7.0 TLS not available\r\n",
        b"221 2.0.0 bye\r\n",
    )
    good = hosts.smtp("127.0.0.6", TLSRecordingHandler(), mx_tls_context)

    router = _router(dns_server, hosts, tls="encrypt")
    result = router.deliver(SENDER, ["r@enc.test"], MESSAGE)

    route = result.recipients["r@enc.test"]
    assert route.status is Status.DELIVERED
    skipped = route.skipped
    assert [a.host for a in skipped] == [
        "plain.enc.test",
        "broken.enc.test",
        "refusing.enc.test",
    ]
    assert skipped[0].reason == "STARTTLS not offered"
    assert skipped[1].reason.startswith("TLS handshake failed: ")
    assert skipped[2].reason == "STARTTLS refused: 454 4.7.0 TLS not available"
    assert skipped[2].reply is not None and skipped[2].reply.code == 454
    assert all(a.tls is None and not a.final for a in skipped)
    # Nothing reached the hosts that could not encrypt.
    assert plain.ehlo_tls == [None] and plain.envelopes == []
    assert [line.split()[0] for line in broken.lines] == [b"EHLO", b"STARTTLS"]
    assert refusing.lines[1:] == [b"STARTTLS\r\n", b"QUIT\r\n"]
    assert route.host is not None and route.host.host == "mx.enc.test"
    assert route.host.tls is not None
    assert good.envelope_tls == [route.host.tls]
    assert [e.rcpt_tos for e in good.envelopes] == [["r@enc.test"]]


def test_verify_checks_the_certificate_against_the_mx_name(
    dns_server: DNSServer,
    hosts: Hosts,
    mx_tls_context: ssl.SSLContext,
    client_tls_context: ssl.SSLContext,
) -> None:
    dns_server.add(
        "verify.test.", "MX", "10 wrong.verify.test.", "20 good.verify.test."
    )
    # Both names lead to servers with the same certificate, which names
    # good.verify.test but not wrong.verify.test.
    dns_server.add("wrong.verify.test.", "A", "127.0.0.2")
    dns_server.add("good.verify.test.", "A", "127.0.0.3")
    wrong = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_tls_context)
    good = hosts.smtp("127.0.0.3", TLSRecordingHandler(), mx_tls_context)

    router = _router(dns_server, hosts, tls="verify", tls_context=client_tls_context)
    result = router.deliver(SENDER, ["r@verify.test"], MESSAGE)

    route = result.recipients["r@verify.test"]
    assert route.status is Status.DELIVERED
    [skipped] = route.skipped
    assert skipped.host == "wrong.verify.test"
    assert skipped.reason.startswith("TLS handshake failed: ")
    assert "wrong.verify.test" in skipped.reason
    assert isinstance(skipped.error, ssl.SSLCertVerificationError)
    assert wrong.envelopes == []
    assert route.host is not None and route.host.host == "good.verify.test"
    assert route.host.tls is not None
    assert good.envelope_tls == [route.host.tls]

    # The default context trusts the system's authorities, not the test's:
    # every host is skipped and the message deferred.
    strict = _router(dns_server, hosts, tls="verify")
    again = strict.deliver(SENDER, ["s@verify.test"], MESSAGE)
    route = again.recipients["s@verify.test"]
    assert route.status is Status.DEFERRED
    assert [a.host for a in route.attempts] == ["wrong.verify.test", "good.verify.test"]
    assert all("certificate verify failed" in a.reason for a in route.attempts)
    assert wrong.envelopes == [] and len(good.envelopes) == 1

    # An address literal is checked against its address.
    literal = hosts.smtp("127.0.0.4", TLSRecordingHandler(), mx_tls_context)
    direct = deliver_direct(
        SENDER,
        ["a@[127.0.0.4]"],
        MESSAGE,
        port=hosts.port,
        timeout=2.0,
        tls="verify",
        tls_context=client_tls_context,
    )
    assert direct.delivered == ["a@[127.0.0.4]"]
    host = direct.recipients["a@[127.0.0.4]"].host
    assert host is not None and host.tls is not None
    assert literal.envelope_tls == [host.tls]


def test_none_never_sends_starttls(
    dns_server: DNSServer, hosts: Hosts, mx_tls_context: ssl.SSLContext
) -> None:
    dns_server.add("clear.test.", "MX", "10 mx.clear.test.")
    dns_server.add("mx.clear.test.", "A", "127.0.0.2")
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_tls_context)
    router = _router(dns_server, hosts, tls="none")
    result = router.deliver(SENDER, ["r@clear.test"], MESSAGE)
    route = result.recipients["r@clear.test"]
    assert route.status is Status.DELIVERED
    assert route.host is not None
    assert (route.host.tls, route.host.tls_fallback) == (None, None)
    # STARTTLS was offered and never used: one EHLO, no handshake.
    assert server.handshakes == 0
    assert server.ehlo_tls == [None]
    assert server.envelope_tls == [None]


def test_bad_tls_policies_raise_before_any_query(
    dns_server: DNSServer, client_tls_context: ssl.SSLContext
) -> None:
    from smtpc import tls

    resolver = dns_server.resolver()
    for bad in ["MAY", "", "dane", "opportunistic", None, 1]:
        with pytest.raises(ValueError, match="tls must be one of"):
            Router(resolver, tls=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tls='none'"):
        Router(resolver, tls="none", tls_context=client_tls_context)
    with pytest.raises(ValueError, match="verifies"):
        Router(resolver, tls="verify", tls_context=tls.unverified_context())
    with pytest.raises(TypeError, match="SSLContext"):
        Router(resolver, tls_context="client.pem")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        deliver_direct(SENDER, ["r@x.test"], MESSAGE, resolver=resolver, tls="tls")
    assert dns_server.queries == []
    # A verifying context is fine for every policy that sends STARTTLS.
    for policy in ("may", "encrypt", "verify"):
        router = Router(resolver, tls=policy, tls_context=client_tls_context)
        assert router.tls_context is client_tls_context


# --- command line -------------------------------------------------------------------


def test_cli_send_direct(
    dns_server: DNSServer,
    hosts: Hosts,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dns_server.add("cli.test.", "MX", "10 down.cli.test.", "20 mx.cli.test.")
    dns_server.add("down.cli.test.", "A", "127.0.0.5")
    dns_server.add("mx.cli.test.", "A", "127.0.0.2")
    dns_server.add("null.test.", "MX", "0 .")
    server = hosts.smtp("127.0.0.2")
    message = tmp_path / "m.eml"
    message.write_bytes(
        b"From: sender@example.org\r\nTo: a@cli.test, b@null.test\r\n\r\nHi.\r\n"
    )
    status = cli.main(
        [
            "send",
            "--direct",
            "--dns-server",
            f"127.0.0.1:{dns_server.port}",
            "--smtp-port",
            str(hosts.port),
            "--timeout",
            "2",
            str(message),
        ]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert f"a@cli.test: delivered via mx.cli.test [127.0.0.2]:{hosts.port}" in out
    assert "skipped down.cli.test [127.0.0.5]" in out
    assert "b@null.test: failed" in out and "null MX" in out
    assert [e.rcpt_tos for e in server.envelopes] == [["a@cli.test"]]


def test_cli_direct_refuses_a_server_too() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["send", "--direct", "--server", "x", "m.eml"])


def test_cli_send_direct_tls(
    dns_server: DNSServer,
    hosts: Hosts,
    mx_tls_context: ssl.SSLContext,
    tls_ca: trustme.CA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dns_server.add("tls.test.", "MX", "10 mx.tls.test.")
    dns_server.add("mx.tls.test.", "A", "127.0.0.2")
    dns_server.add("fallback.test.", "MX", "10 mx.fallback.test.")
    dns_server.add("mx.fallback.test.", "A", "127.0.0.3")
    server = hosts.smtp("127.0.0.2", TLSRecordingHandler(), mx_tls_context)
    broken = hosts.smtp("127.0.0.3", TLSRecordingHandler(), _broken_tls_context())
    ca = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: sender@example.org\r\nTo: a@tls.test\r\n\r\nHi.\r\n")
    fallback = tmp_path / "f.eml"
    fallback.write_bytes(
        b"From: sender@example.org\r\nTo: b@fallback.test\r\n\r\nHi.\r\n"
    )
    common = [
        "send",
        "--direct",
        "--dns-server",
        f"127.0.0.1:{dns_server.port}",
        "--smtp-port",
        str(hosts.port),
        "--timeout",
        "2",
    ]

    status = cli.main(
        [*common, "--direct-tls", "verify", "--cafile", str(ca), str(message)]
    )
    out = capsys.readouterr().out
    assert status == 0
    [version] = server.envelope_tls
    assert version is not None
    assert f"via mx.tls.test [127.0.0.2]:{hosts.port} with {version}: 250" in out

    status = cli.main([*common, "--direct-tls", "none", str(message)])
    assert status == 0
    assert f"[127.0.0.2]:{hosts.port} in clear text: 250" in capsys.readouterr().out
    assert server.envelope_tls == [version, None]

    # The default is "may": the broken handshake is reported, then clear text.
    status = cli.main([*common, str(fallback)])
    out = capsys.readouterr().out
    assert status == 0
    assert "b@fallback.test: delivered via mx.fallback.test" in out
    assert "    clear text: TLS handshake failed: " in out
    assert broken.envelope_tls == [None]

    # --tls stays the smarthost's; --cafile needs verify; --direct-tls needs --direct.
    for bad in (
        [*common, "--tls", "starttls", str(message)],
        [*common, "--direct-tls", "encrypt", "--cafile", str(ca), str(message)],
        ["send", "--server", "127.0.0.1:1", "--direct-tls", "may", str(message)],
    ):
        assert cli.main(bad) == 2
    assert "--direct" in capsys.readouterr().err
    assert len(server.envelopes) == 2


# --- with the bulk sender -----------------------------------------------------------


def test_bulk_sender_delivers_directly_through_a_pool_per_host(
    dns_server: DNSServer, hosts: Hosts
) -> None:
    import asyncio

    from smtpc.pool import BulkSender, DirectPools, Outcome

    dns_server.add("one.test.", "MX", "10 a.one.test.", "20 b.one.test.")
    dns_server.add("a.one.test.", "A", "127.0.0.2")  # nothing listens here
    dns_server.add("b.one.test.", "A", "127.0.0.3")
    dns_server.add("two.test.", "A", "127.0.0.4")  # implicit MX
    dns_server.add("gone.test.", "MX", "0 .")  # null MX
    backup = hosts.smtp("127.0.0.3")
    bare = hosts.smtp("127.0.0.4")
    messages = [
        (SENDER, ["x@one.test", "y@two.test"], MESSAGE, "m1"),
        (SENDER, ["z@one.test", "n@gone.test", "no-domain"], MESSAGE, "m2"),
    ]

    async def run() -> list[Any]:
        pools = DirectPools(dns_server.resolver(), port=hosts.port, timeout=2.0)
        async with pools:
            sender = BulkSender(pools, max_attempts=1)
            return [r async for r in sender.send(messages)]

    results = {r.id: r for r in asyncio.run(asyncio.wait_for(run(), 30))}
    assert results["m1"].delivered == ["x@one.test", "y@two.test"]
    assert results["m2"].delivered == ["z@one.test"]
    outcomes = {r.address: r for r in results["m2"].recipients}
    assert outcomes["n@gone.test"].outcome is Outcome.REFUSED
    assert outcomes["no-domain"].outcome is Outcome.REFUSED
    assert "no domain" in (outcomes["no-domain"].error or "")
    assert sorted(tuple(e.rcpt_tos) for e in backup.envelopes) == [
        ("x@one.test",),
        ("z@one.test",),
    ]
    assert [e.rcpt_tos for e in bare.envelopes] == [["y@two.test"]]


def test_cli_bulk_direct(dns_server: DNSServer, hosts: Hosts, tmp_path: Path) -> None:
    import json

    from smtpc import cli

    dns_server.add("one.test.", "MX", "10 mx.one.test.")
    dns_server.add("mx.one.test.", "A", "127.0.0.5")
    server = hosts.smtp("127.0.0.5")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        json.dumps({"id": "j1", "from": SENDER, "to": ["a@one.test"], "content": "x"})
        + "\n"
    )
    report = tmp_path / "report.jsonl"
    status = cli.main(
        [
            "bulk",
            "--direct",
            "--dns-server",
            f"127.0.0.1:{dns_server.port}",
            "--smtp-port",
            str(hosts.port),
            "--timeout",
            "5",
            "--progress",
            "none",
            "--report",
            str(report),
            str(jobs),
        ]
    )
    assert status == 0
    [line] = [json.loads(x) for x in report.read_text().splitlines()]
    assert line["id"] == "j1"
    assert line["recipients"][0]["outcome"] == "delivered"
    assert [e.rcpt_tos for e in server.envelopes] == [["a@one.test"]]
