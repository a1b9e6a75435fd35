"""SASL mechanisms for AUTH (RFC 4954): small objects that answer challenges.

A mechanism has a ``name`` and a ``respond(challenge)`` method: given None
it returns the initial response (or None to wait for a first challenge);
given a decoded challenge it returns the decoded answer. No I/O, no
logging; credentials stay out of ``repr()``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import ClassVar, Protocol


class Mechanism(Protocol):
    name: str

    def respond(self, challenge: bytes | None) -> bytes | None: ...


@dataclass(slots=True)
class Plain:
    """PLAIN (RFC 4616): authorisation identity, user name and password in one
    initial response, UTF-8 encoded."""

    name: ClassVar[str] = "PLAIN"
    user: str
    password: str = field(repr=False)
    authzid: str = ""

    def respond(self, challenge: bytes | None) -> bytes | None:
        return b"\0".join(
            s.encode("utf-8") for s in (self.authzid, self.user, self.password)
        )


@dataclass(slots=True)
class Login:
    """LOGIN: the user name as initial response (or at the first challenge),
    the password at the next one."""

    name: ClassVar[str] = "LOGIN"
    user: str
    password: str = field(repr=False)
    _sent_user: bool = field(default=False, repr=False)

    def respond(self, challenge: bytes | None) -> bytes | None:
        if not self._sent_user:
            self._sent_user = True
            return self.user.encode("utf-8")
        return self.password.encode("utf-8")


@dataclass(slots=True)
class CramMD5:
    """CRAM-MD5 (RFC 2195): the user name and an HMAC-MD5 of the challenge."""

    name: ClassVar[str] = "CRAM-MD5"
    user: str
    password: str = field(repr=False)

    def respond(self, challenge: bytes | None) -> bytes | None:
        if challenge is None:
            return None
        digest = hmac.new(self.password.encode("utf-8"), challenge, "md5")
        return self.user.encode("utf-8") + b" " + digest.hexdigest().encode()


# Strongest first, as smtplib orders them.
PREFERENCE: tuple[str, ...] = ("CRAM-MD5", "PLAIN", "LOGIN")
MECHANISMS: dict[str, type[Plain] | type[Login] | type[CramMD5]] = {
    "PLAIN": Plain,
    "LOGIN": Login,
    "CRAM-MD5": CramMD5,
}


def choose(advertised: str, preference: tuple[str, ...] = PREFERENCE) -> list[str]:
    """The mechanisms to try, strongest first, among those the server offers."""
    offered = advertised.upper().split()
    return [name for name in preference if name in offered]
