"""Command arguments: path quoting, extension keywords, encodings (RFC 5321 §4.1)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .. import core

# RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"([A-Za-z0-9][A-Za-z0-9\-]*) ?")
# Characters that mean an address needs the full RFC 5322 parser.
_NEEDS_PARSER = frozenset(' <>"(),;:\\')


def quoteaddr(addrstring: str) -> str:
    """Quote a subset of the email addresses defined by RFC 5321: ``<addr>``.

    Accepts what smtplib's ``quoteaddr`` accepts (``Name <addr>`` too).
    """
    if _NEEDS_PARSER.isdisjoint(addrstring):
        return f"<{addrstring}>"
    from email.utils import parseaddr

    displayname, addr = parseaddr(addrstring)
    if (displayname, addr) == ("", ""):
        if addrstring.strip().startswith("<"):
            return addrstring
        return f"<{addrstring}>"
    return f"<{addr}>"


def addr_only(addrstring: str) -> str:
    """The bare address of ``Name <addr>``, as smtplib's ``_addr_only``."""
    if _NEEDS_PARSER.isdisjoint(addrstring):
        return addrstring
    from email.utils import parseaddr

    displayname, addr = parseaddr(addrstring)
    if (displayname, addr) == ("", ""):
        return addrstring
    return addr


def encode_path(address: str, smtputf8: bool) -> bytes:
    """``<address>`` as bytes, checked against RFC 5321's limits.

    Raises:
        ValueError: CR, LF or NUL, an over-long address, or non-ASCII
            characters without SMTPUTF8.
    """
    # Refuse control characters before the RFC 5322 parser can drop them:
    # an address that needed cleaning is not the one the caller meant.
    core.check_argument(address.encode("utf-8", "surrogatepass"), "address")
    quoted = quoteaddr(address)
    try:
        path = quoted.encode("utf-8" if smtputf8 else "ascii")
    except UnicodeEncodeError:
        raise ValueError(
            f"address {address!r} is not ASCII and the session has no SMTPUTF8"
        ) from None
    core.check_path(path[1:-1] if path.startswith(b"<") else path)
    return path


def check_command(line: bytes, limit: int = core.MAX_COMMAND_LINE) -> None:
    """Refuse a command line the emitter would refuse, without queueing it.

    Raises:
        ValueError: CR, LF or NUL, or longer than ``limit`` with its CRLF.
    """
    verb = line.split(b" ", 1)[0].decode("ascii", "replace")
    core.check_argument(line, f"{verb} command")
    if len(line) + 2 > limit:
        raise ValueError(f"{verb} command longer than {limit} octets")


def parse_extensions(lines: Iterable[bytes]) -> dict[str, str]:
    """The extension keywords of an EHLO reply, lower-cased, with parameters.

    Follows smtplib: the old ``AUTH=`` form is merged into ``auth``.
    """
    features: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("latin-1")
        if line[:5].lower() == "auth=":
            old = features.get("auth", "")
            features["auth"] = f"{old} {line[5:]}".strip()
            continue
        match = _KEYWORD.match(line)
        if match is None:
            continue
        keyword = match[1].lower()
        params = line[match.end() :].strip()
        if keyword == "auth":
            features[keyword] = f"{features.get(keyword, '')} {params}".strip()
        else:
            features[keyword] = params
    return features


def size_limit(features: Mapping[str, str]) -> int:
    """The server's SIZE limit (RFC 1870 §4), or 0 when it states none."""
    value = features.get("size", "").strip()
    return int(value) if value.isdigit() else 0


def mail_params(
    options: Iterable[str],
    *,
    size: int | None,
    eight_bit: bool | None,
    smtputf8: bool,
    features: Mapping[str, str],
) -> list[str]:
    """MAIL FROM parameters: the caller's, then those the content calls for.

    A parameter the caller gave is never repeated.
    """
    params = list(options)
    given = {p.split("=", 1)[0].upper() for p in params}
    if size is not None and "size" in features and "SIZE" not in given:
        params.insert(0, f"SIZE={size}")
    if eight_bit is not False and "8bitmime" in features and "BODY" not in given:
        params.append("BODY=8BITMIME")
    if smtputf8 and "SMTPUTF8" not in given:
        params.append("SMTPUTF8")
    return params


def command_limit(params: Iterable[str]) -> int:
    """The longest MAIL or RCPT line allowed with these parameters.

    RFC 5321 §4.5.3.1.4 lets extensions lengthen command lines: RFC 1870
    adds 26 octets for SIZE, RFC 3461 §4 adds 100 for ENVID/RET on MAIL and
    500 for NOTIFY/ORCPT on RCPT; other parameters get the same allowance.
    """
    return core.MAX_COMMAND_LINE + sum(len(p) + 1 for p in params)


def xtext(value: str) -> str:
    """RFC 3461 §4 xtext: "+", "=" and octets outside 33-126 as "+HH"."""
    out = []
    for octet in value.encode("utf-8"):
        if 33 <= octet <= 126 and octet not in (0x2B, 0x3D):
            out.append(chr(octet))
        else:
            out.append(f"+{octet:02X}")
    return "".join(out)


_NOTIFY = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})


@dataclass(frozen=True, slots=True)
class DSN:
    """A request for delivery status notifications (RFC 3461).

    Args:
        notify: ``("NEVER",)`` or any of SUCCESS, FAILURE, DELAY (§4.1).
        ret: ``"FULL"`` or ``"HDRS"``: what a failure report returns (§4.3).
        envid: the sender's identifier for this transaction (§4.4).
        orcpt: send each forward-path as its original recipient (§4.2).

    Raises:
        ValueError: a value the RFC does not allow.
    """

    notify: tuple[str, ...] = ()
    ret: str | None = None
    envid: str | None = None
    orcpt: bool = False

    def __post_init__(self) -> None:
        notify = tuple(n.upper() for n in self.notify)
        if not set(notify) <= _NOTIFY or ("NEVER" in notify and len(notify) > 1):
            raise ValueError(
                "NOTIFY takes NEVER alone, or any of SUCCESS, FAILURE, DELAY"
            )
        object.__setattr__(self, "notify", notify)
        if self.ret is not None:
            if self.ret.upper() not in ("FULL", "HDRS"):
                raise ValueError("RET takes FULL or HDRS")
            object.__setattr__(self, "ret", self.ret.upper())
        if self.envid is not None and (
            not self.envid.isascii() or len(xtext(self.envid)) > 100
        ):
            raise ValueError("ENVID must be ASCII and at most 100 octets as xtext")

    def mail_params(self) -> list[str]:
        """RET and ENVID, for MAIL FROM."""
        params = []
        if self.ret is not None:
            params.append(f"RET={self.ret}")
        if self.envid is not None:
            params.append(f"ENVID={xtext(self.envid)}")
        return params

    def rcpt_params(self, address: str) -> list[str]:
        """NOTIFY and ORCPT, for one RCPT TO."""
        params = []
        if self.notify:
            params.append("NOTIFY=" + ",".join(self.notify))
        if self.orcpt:
            kind = "utf-8" if not address.isascii() else "rfc822"
            params.append(f"ORCPT={kind};{xtext(addr_only(address))}")
        return params
