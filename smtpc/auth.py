"""SASL mechanisms for AUTH (RFC 4954): small objects that answer challenges.

A mechanism has a ``name`` and a ``respond(challenge)`` method: given None
it returns the initial response (or None to wait for a first challenge);
given a decoded challenge it returns the decoded answer. Each call of
``respond(None)`` starts a new exchange, so one object can be used again.
No I/O, no logging; credentials stay out of ``repr()``.

Two optional members let a mechanism say more than its answers:

* ``finish()``, called once the server accepted (235): raises
  :class:`ServerProofError` when the server never proved that it knows the
  password (SCRAM's server signature, RFC 5802 §3).
* ``error_detail``: what the server's last challenge told about a failure
  (the status of an OAuth error, RFC 7628 §3.2.2), added to the message of
  the :class:`~smtpc.SMTPAuthenticationError` that follows.

A ``respond()`` that raises :class:`ChallengeError` makes the engine cancel
the exchange with ``*`` (RFC 4954 §4), so the session stays usable.

Mechanism choice: :func:`choose` tries, strongest first, SCRAM-SHA-256,
SCRAM-SHA-1, CRAM-MD5, PLAIN, LOGIN. NTLM, XOAUTH2 and OAUTHBEARER are used
only when the caller names them: the OAuth ones take a token rather than a
password, and NTLM needs a Windows domain account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import stringprep
import struct
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from . import core


class Mechanism(Protocol):
    @property
    def name(self) -> str: ...

    def respond(self, challenge: bytes | None) -> bytes | None: ...


class ChallengeError(ValueError):
    """The server sent a challenge the mechanism cannot answer.

    The exchange is cancelled with ``*`` (RFC 4954 §4); the caller sees an
    :class:`~smtpc.SMTPAuthenticationError` naming the mechanism and why.
    """


class ServerProofError(ChallengeError):
    """The server could not prove that it knows the password (SCRAM)."""


Token = str | Callable[[], str]


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
        if challenge is None:
            self._sent_user = False
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


# --- SCRAM (RFC 5802, RFC 7677) ------------------------------------------------


def saslprep(text: str, what: str = "string") -> str:
    """SASLprep (RFC 4013) of ``text``, as a query (unassigned code points pass).

    Args:
        text: a user name or password.
        what: names ``text`` in the error message (never its value).

    Returns:
        The prepared string.

    Raises:
        ValueError: ``text`` holds a code point SASLprep prohibits, breaks the
            bidirectional rules, or prepares to the empty string.
    """
    # RFC 4013 §2.1: non-ASCII spaces become a space; "commonly mapped to
    # nothing" characters vanish.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in text
        if not stringprep.in_table_b1(c)
    )
    # §2.2: NFKC, with the Unicode 3.2 tables stringprep is defined on.
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    # §2.3: prohibited output.
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for c in prepared:
        if any(table(c) for table in prohibited):
            raise ValueError(f"{what} holds a character SASLprep prohibits")
    # §2.4 and RFC 3454 §6: right-to-left text must be wholly so, and start
    # and end with a right-to-left character.
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise ValueError(f"{what} mixes left-to-right and right-to-left text")
        if not (
            stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])
        ):
            raise ValueError(f"{what} breaks SASLprep's bidirectional rule")
    if not prepared:
        raise ValueError(f"{what} is empty after SASLprep")
    return prepared


def _saslname(text: str, what: str) -> str:
    # RFC 5802 §5.1: "=" and "," are written =3D and =2C.
    return saslprep(text, what).replace("=", "=3D").replace(",", "=2C")


def _scram_attributes(message: bytes, what: str) -> dict[str, str]:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise ChallengeError(f"{what} is not UTF-8") from None
    attributes: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ChallengeError(f"{what} is malformed")
        attributes.setdefault(key, value)
    return attributes


# A server asking for more iterations than this is refused, so that a hostile
# server cannot make the client spin for minutes. RFC 7677 §4 suggests 4096
# at least; common servers use 4096 to a few hundred thousand.
MAX_SCRAM_ITERATIONS = 1_000_000


@dataclass(slots=True)
class _Scram:
    """SCRAM without channel binding (gs2 header ``n``).

    The user name and the password go through SASLprep (:func:`saslprep`,
    RFC 4013, as RFC 5802 §2.2 asks); ``=`` and ``,`` in names are escaped.
    Channel binding (the ``-PLUS`` variants) is not supported.

    Args:
        user: the authentication identity.
        password: the password.
        authzid: the authorisation identity, if other than ``user``.
        nonce: the client nonce; random (:mod:`secrets`) when None. Tests fix
            it to reproduce the RFC examples.
    """

    name: ClassVar[str]
    _digest: ClassVar[str]
    user: str
    password: str = field(repr=False)
    authzid: str = ""
    nonce: str | None = field(default=None, repr=False)
    _gs2: str = field(default="", repr=False)
    _first_bare: str = field(default="", repr=False)
    _client_nonce: str = field(default="", repr=False)
    _server_signature: bytes | None = field(default=None, repr=False)
    _verified: bool = field(default=False, repr=False)
    _step: int = field(default=0, repr=False)
    error_detail: str | None = field(default=None, repr=False)

    def respond(self, challenge: bytes | None) -> bytes | None:
        if challenge is None or self._step == 0:
            return self._client_first()
        if self._step == 1:
            return self._client_final(challenge)
        if self._step == 2:
            return self._verify(challenge)
        raise ChallengeError(f"{self.name}: unexpected challenge after the last")

    def finish(self) -> None:
        """Raise :class:`ServerProofError` unless the server signature verified."""
        if not self._verified:
            raise ServerProofError(
                f"{self.name}: the server accepted without proving that it "
                "knows the password"
            )

    def _client_first(self) -> bytes:
        # RFC 5802 §7: gs2-header "n,[a=authzid]," then the bare message.
        nonce = self.nonce if self.nonce is not None else secrets.token_urlsafe(24)
        if not nonce or not nonce.isprintable() or "," in nonce or not nonce.isascii():
            raise ValueError("SCRAM nonce must be printable ASCII without ','")
        saslprep(self.password, "password")  # refuse it before anything is sent
        authzid = _saslname(self.authzid, "authzid") if self.authzid else ""
        self._gs2 = f"n,a={authzid}," if authzid else "n,,"
        self._first_bare = f"n={_saslname(self.user, 'user name')},r={nonce}"
        self._client_nonce = nonce
        self._verified = False
        self._server_signature = None
        self.error_detail = None
        self._step = 1
        return (self._gs2 + self._first_bare).encode("utf-8")

    def _client_final(self, server_first: bytes) -> bytes:
        attrs = _scram_attributes(server_first, "server-first-message")
        # §5.1: an "m" attribute is a mandatory extension we do not know.
        if "m" in attrs:
            raise ChallengeError(f"{self.name}: server requires an extension")
        nonce, salt_b64, count = attrs.get("r"), attrs.get("s"), attrs.get("i")
        if nonce is None or salt_b64 is None or count is None:
            raise ChallengeError(f"{self.name}: server-first-message is incomplete")
        if not nonce.startswith(self._client_nonce) or nonce == self._client_nonce:
            raise ChallengeError(f"{self.name}: server nonce does not extend ours")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except binascii.Error:
            raise ChallengeError(f"{self.name}: salt is not base64") from None
        if not count.isdigit() or not 0 < int(count) <= MAX_SCRAM_ITERATIONS:
            raise ChallengeError(f"{self.name}: iteration count {count[:12]!r}")

        # §3: SaltedPassword, ClientKey, StoredKey, then the proof over the
        # AuthMessage.
        password = saslprep(self.password, "password").encode("utf-8")
        salted = hashlib.pbkdf2_hmac(self._digest, password, salt, int(count))
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self._digest, client_key).digest()
        binding = base64.b64encode(self._gs2.encode("utf-8")).decode("ascii")
        without_proof = f"c={binding},r={nonce}"
        auth_message = ",".join(
            (self._first_bare, server_first.decode("utf-8"), without_proof)
        ).encode("utf-8")
        signature = self._hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = self._hmac(salted, b"Server Key")
        self._server_signature = self._hmac(server_key, auth_message)
        self._step = 2
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def _verify(self, server_final: bytes) -> bytes:
        self._step = 3
        attrs = _scram_attributes(server_final, "server-final-message")
        if "e" in attrs:
            # §7 server-error: answer empty and let the final reply say no.
            self.error_detail = f"{self.name} server error: {attrs['e'][:64]}"
            return b""
        try:
            signature = base64.b64decode(attrs.get("v", ""), validate=True)
        except binascii.Error:
            signature = b""
        assert self._server_signature is not None
        if not hmac.compare_digest(signature, self._server_signature):
            raise ServerProofError(
                f"{self.name}: the server signature does not match; the "
                "server does not know the password"
            )
        self._verified = True
        return b""

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self._digest).digest()


@dataclass(slots=True)
class ScramSHA1(_Scram):
    __doc__ = _Scram.__doc__
    name: ClassVar[str] = "SCRAM-SHA-1"
    _digest: ClassVar[str] = "sha1"


@dataclass(slots=True)
class ScramSHA256(_Scram):
    __doc__ = _Scram.__doc__
    name: ClassVar[str] = "SCRAM-SHA-256"
    _digest: ClassVar[str] = "sha256"


# --- OAuth 2.0 bearer tokens ---------------------------------------------------


def _fetch_token(token: Token) -> str:
    value = token() if callable(token) else token
    if not isinstance(value, str):
        raise TypeError(f"OAuth token must be a str, not {type(value).__name__}")
    if not value or "\x01" in value or not value.isprintable():
        raise ValueError("OAuth token must be non-empty printable text")
    return value


def _oauth_error(name: str, challenge: bytes) -> str:
    # RFC 7628 §3.2.2: a JSON object with "status", and maybe "scope" and
    # "openid-configuration"; XOAUTH2 sends the same shape. Only these keys
    # are reported, cut short: the rest is the server's to explain.
    try:
        error: Any = json.loads(challenge)
    except ValueError:
        return f"{name} error: not JSON"
    if not isinstance(error, dict):
        return f"{name} error: not a JSON object"
    known = ("status", "scope", "schemes", "openid-configuration")
    shown = ", ".join(f"{key}={str(error[key])[:100]}" for key in known if key in error)
    return f"{name} error: {shown or 'no status'}"


@dataclass(slots=True)
class XOAuth2:
    """XOAUTH2 (Google's and Microsoft's): ``user=U^Aauth=Bearer T^A^A``.

    Args:
        user: the mailbox address.
        token: the access token, or a callable returning a fresh one; it is
            called at the start of each exchange.

    On failure the server sends a 334 challenge holding a JSON error; the
    answer is the empty response, and the error's status ends up in
    ``error_detail``.
    """

    name: ClassVar[str] = "XOAUTH2"
    user: str
    token: Token = field(repr=False)
    error_detail: str | None = field(default=None, repr=False)
    _sent: bool = field(default=False, repr=False)

    def respond(self, challenge: bytes | None) -> bytes | None:
        if challenge is None or not self._sent:
            return self._initial()
        self.error_detail = _oauth_error(self.name, challenge)
        return b""

    def _initial(self) -> bytes:
        if "\x01" in self.user or not self.user:
            raise ValueError("XOAUTH2 user must be non-empty, without ^A")
        token = _fetch_token(self.token)
        self._sent, self.error_detail = True, None
        return f"user={self.user}\x01auth=Bearer {token}\x01\x01".encode()


@dataclass(slots=True)
class OAuthBearer:
    """OAUTHBEARER (RFC 7628 §3.1): gs2 header, then ``auth=Bearer TOKEN``.

    Args:
        user: the authorisation identity (``a=`` of the gs2 header); empty
            leaves it out.
        token: the access token, or a callable returning a fresh one; it is
            called at the start of each exchange.
        host, port: the server, sent as ``host=`` and ``port=`` when given.

    On failure the server sends a 334 challenge holding a JSON error; the
    answer is ``%x01`` (§3.2.3), and the error's status ends up in
    ``error_detail``.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    user: str
    token: Token = field(repr=False)
    host: str = ""
    port: int | None = None
    error_detail: str | None = field(default=None, repr=False)
    _sent: bool = field(default=False, repr=False)

    def respond(self, challenge: bytes | None) -> bytes | None:
        if challenge is None or not self._sent:
            return self._initial()
        self.error_detail = _oauth_error(self.name, challenge)
        return b"\x01"

    def _initial(self) -> bytes:
        for value, what in ((self.user, "user"), (self.host, "host")):
            if "\x01" in value or not value.isprintable():
                raise ValueError(f"OAUTHBEARER {what} must be printable, without ^A")
        gs2 = f"n,a={_saslname(self.user, 'user')}," if self.user else "n,,"
        fields = [gs2]
        if self.host:
            fields.append(f"host={self.host}")
        if self.port is not None:
            fields.append(f"port={int(self.port)}")
        fields.append(f"auth=Bearer {_fetch_token(self.token)}")
        self._sent, self.error_detail = True, None
        return ("\x01".join(fields) + "\x01\x01").encode("utf-8")


# --- NTLM (MS-NLMP) ------------------------------------------------------------

# NegotiateFlags, MS-NLMP §2.2.2.5.
NTLMSSP_NEGOTIATE_UNICODE = 0x00000001
NTLMSSP_NEGOTIATE_OEM = 0x00000002
NTLMSSP_REQUEST_TARGET = 0x00000004
NTLMSSP_NEGOTIATE_SIGN = 0x00000010
NTLMSSP_NEGOTIATE_SEAL = 0x00000020
NTLMSSP_NEGOTIATE_NTLM = 0x00000200
NTLMSSP_NEGOTIATE_ALWAYS_SIGN = 0x00008000
NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
NTLMSSP_NEGOTIATE_TARGET_INFO = 0x00800000
NTLMSSP_NEGOTIATE_VERSION = 0x02000000
NTLMSSP_NEGOTIATE_128 = 0x20000000
NTLMSSP_NEGOTIATE_KEY_EXCH = 0x40000000
NTLMSSP_NEGOTIATE_56 = 0x80000000

# What the client asks for: no signing or sealing, since SMTP AUTH uses NTLM
# only to authenticate; the session after it is not protected by NTLM.
NTLM_NEGOTIATE_FLAGS = (
    NTLMSSP_NEGOTIATE_UNICODE
    | NTLMSSP_NEGOTIATE_OEM
    | NTLMSSP_REQUEST_TARGET
    | NTLMSSP_NEGOTIATE_NTLM
    | NTLMSSP_NEGOTIATE_ALWAYS_SIGN
    | NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NTLMSSP_NEGOTIATE_TARGET_INFO
    | NTLMSSP_NEGOTIATE_128
    | NTLMSSP_NEGOTIATE_56
)

_NTLMSSP = b"NTLMSSP\0"
# AV_PAIR ids, §2.2.2.1.
_AV_EOL, _AV_FLAGS, _AV_TIMESTAMP = 0, 6, 7
_AV_FLAG_MIC = 0x00000002
# 100 ns ticks between 1601-01-01 (FILETIME) and 1970-01-01.
_FILETIME_EPOCH = 116444736000000000


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320): OpenSSL's when it has one, else smtpc's core."""
    try:
        return hashlib.new("md4", data).digest()
    except ValueError:
        return core.md4(data)


def ntowfv2(password: str, user: str, domain: str) -> bytes:
    """NTOWFv2 (MS-NLMP §3.3.2): HMAC-MD5 keyed by MD4 of the password."""
    nt_hash = md4(password.encode("utf-16-le"))
    return _hmac_md5(nt_hash, (user.upper() + domain).encode("utf-16-le"))


def _hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, "md5").digest()


def _rc4(key: bytes, data: bytes) -> bytes:
    # RC4K (MS-NLMP §6), needed only to send the random session key when
    # the server asks for key exchange.
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


@dataclass(frozen=True, slots=True)
class NtlmChallenge:
    """The parts of a CHALLENGE_MESSAGE (MS-NLMP §2.2.1.2) NTLMv2 needs."""

    flags: int
    server_challenge: bytes
    target_info: bytes
    timestamp: bytes | None
    raw: bytes = field(repr=False)

    @classmethod
    def parse(cls, message: bytes) -> NtlmChallenge:
        """Parse a CHALLENGE_MESSAGE.

        Raises:
            ChallengeError: not a well-formed CHALLENGE_MESSAGE.
        """
        if len(message) < 32 or message[:8] != _NTLMSSP:
            raise ChallengeError("NTLM: challenge is not an NTLMSSP message")
        (kind,) = struct.unpack_from("<I", message, 8)
        if kind != 2:
            raise ChallengeError(f"NTLM: message type {kind}, expected 2")
        (flags,) = struct.unpack_from("<I", message, 20)
        server_challenge = message[24:32]
        target_info = b""
        if flags & NTLMSSP_NEGOTIATE_TARGET_INFO and len(message) >= 48:
            length, _, offset = struct.unpack_from("<HHI", message, 40)
            if offset + length > len(message):
                raise ChallengeError("NTLM: target info runs past the message")
            target_info = message[offset : offset + length]
        timestamp = _av_timestamp(target_info)
        return cls(flags, server_challenge, target_info, timestamp, bytes(message))


def _av_pairs(target_info: bytes) -> list[tuple[int, bytes]]:
    pairs: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 4 <= len(target_info):
        av_id, length = struct.unpack_from("<HH", target_info, pos)
        if av_id == _AV_EOL:
            return pairs
        value = target_info[pos + 4 : pos + 4 + length]
        if len(value) != length:
            break
        pairs.append((av_id, value))
        pos += 4 + length
    raise ChallengeError("NTLM: target info is not a list of AV pairs")


def _av_timestamp(target_info: bytes) -> bytes | None:
    if not target_info:
        return None
    for av_id, value in _av_pairs(target_info):
        if av_id == _AV_TIMESTAMP and len(value) == 8:
            return value
    return None


def _with_mic_flag(target_info: bytes) -> bytes:
    # §3.1.5.1.2: when the server sent a timestamp the client sends a MIC
    # and says so in MsvAvFlags.
    pairs = _av_pairs(target_info)
    flags = next((v for i, v in pairs if i == _AV_FLAGS and len(v) == 4), None)
    value = (int.from_bytes(flags, "little") if flags else 0) | _AV_FLAG_MIC
    pairs = [(i, v) for i, v in pairs if i != _AV_FLAGS]
    pairs.append((_AV_FLAGS, value.to_bytes(4, "little")))
    out = b"".join(struct.pack("<HH", i, len(v)) + v for i, v in pairs)
    return out + struct.pack("<HH", _AV_EOL, 0)


@dataclass(slots=True)
class Ntlm:
    """NTLM (MS-NLMP) with NTLMv2 responses, as Exchange expects for AUTH NTLM.

    NEGOTIATE as the initial response, then AUTHENTICATE in answer to the
    server's CHALLENGE. When the challenge carries a timestamp, the
    AUTHENTICATE message has a MIC and no LMv2 response (§3.1.5.1.2). NTLM
    here authenticates only: nothing after AUTH is signed or sealed, and
    there is no channel binding (Extended Protection) nor target name.
    Strings go as UTF-16; a server that offers only OEM strings is refused.

    Args:
        user: the account name; ``DOMAIN\\user`` sets ``domain`` too, and a
            ``user@domain`` name is sent as it is.
        password: the password.
        domain: the account's domain (its NetBIOS name).
        workstation: the client's name, or empty.
        negotiate_flags: NegotiateFlags of the NEGOTIATE message.
        version: the VERSION field, sent when that flag is negotiated.
        client_challenge, random_session_key, timestamp: fixed values for
            tests; random (:mod:`secrets`) and the current time when None.
    """

    name: ClassVar[str] = "NTLM"
    user: str
    password: str = field(repr=False)
    domain: str = ""
    workstation: str = ""
    negotiate_flags: int = NTLM_NEGOTIATE_FLAGS
    version: bytes = bytes(8)
    client_challenge: bytes | None = field(default=None, repr=False)
    random_session_key: bytes | None = field(default=None, repr=False)
    timestamp: int | None = field(default=None, repr=False)
    _negotiate: bytes = field(default=b"", repr=False)
    _done: bool = field(default=False, repr=False)

    def respond(self, challenge: bytes | None) -> bytes | None:
        if challenge is None or not self._negotiate:
            self._negotiate = self.negotiate_message()
            self._done = False
            return self._negotiate
        if self._done:
            raise ChallengeError("NTLM: unexpected challenge after AUTHENTICATE")
        self._done = True
        return self.authenticate_message(NtlmChallenge.parse(challenge))

    def negotiate_message(self) -> bytes:
        """The NEGOTIATE_MESSAGE (§2.2.1.1): flags, no domain or workstation."""
        has_version = self.negotiate_flags & NTLMSSP_NEGOTIATE_VERSION
        size = 40 if has_version else 32
        message = _NTLMSSP + struct.pack(
            "<II HHI HHI", 1, self.negotiate_flags, 0, 0, size, 0, 0, size
        )
        return message + (self._version() if has_version else b"")

    def authenticate_message(self, challenge: NtlmChallenge) -> bytes:
        """The AUTHENTICATE_MESSAGE (§2.2.1.3) answering ``challenge``.

        Raises:
            ChallengeError: the server does not offer UTF-16 strings.
        """
        if not challenge.flags & NTLMSSP_NEGOTIATE_UNICODE:
            raise ChallengeError("NTLM: server does not offer UNICODE strings")
        user, domain = self._account()
        flags = challenge.flags & self.negotiate_flags & ~NTLMSSP_NEGOTIATE_OEM
        flags |= self.negotiate_flags & NTLMSSP_REQUEST_TARGET
        client_challenge = self._fixed(self.client_challenge, 8, "client_challenge")
        key = ntowfv2(self.password, user, domain)

        # 1. §3.1.5.1.2: the server's timestamp if it sent one (then a MIC
        # and no LMv2 response), else the client's clock.
        with_mic = challenge.timestamp is not None
        target_info = challenge.target_info or struct.pack("<HH", _AV_EOL, 0)
        if challenge.timestamp is not None:
            timestamp = challenge.timestamp
            target_info = _with_mic_flag(target_info)
        else:
            now = self.timestamp
            if now is None:
                now = _FILETIME_EPOCH + time.time_ns() // 100
            timestamp = struct.pack("<Q", now)

        # 2. §3.3.2: temp, NTProofStr, the responses, SessionBaseKey.
        temp = (b"\x01\x01" + bytes(6) + timestamp + client_challenge + bytes(4)) + (
            target_info + bytes(4)
        )
        proof = _hmac_md5(key, challenge.server_challenge + temp)
        nt_response = proof + temp
        if with_mic:
            lm_response = bytes(24)
        else:
            lm_data = challenge.server_challenge + client_challenge
            lm_response = _hmac_md5(key, lm_data) + client_challenge
        session_base_key = _hmac_md5(key, proof)

        # 3. §3.1.5.1.2: key exchange when negotiated; KeyExchangeKey is the
        # SessionBaseKey for NTLMv2 (§3.4.5.1).
        if flags & NTLMSSP_NEGOTIATE_KEY_EXCH:
            exported = self._fixed(self.random_session_key, 16, "random_session_key")
            encrypted_key = _rc4(session_base_key, exported)
        else:
            exported, encrypted_key = session_base_key, b""

        # 4. §2.2.1.3: header, Version, MIC, then the payload in the order
        # of the §4.2.4.3 example: domain, user, workstation, LM, NT, key.
        payload = [
            domain.encode("utf-16-le"),
            user.encode("utf-16-le"),
            self.workstation.encode("utf-16-le"),
            lm_response,
            nt_response,
            encrypted_key,
        ]
        offset = 64 + 8 + (16 if with_mic else 0)
        fields = {}
        for index, value in enumerate(payload):
            fields[index] = struct.pack("<HHI", len(value), len(value), offset)
            offset += len(value)
        header = (
            _NTLMSSP
            + struct.pack("<I", 3)
            + fields[3]
            + fields[4]
            + fields[0]
            + fields[1]
            + fields[2]
            + fields[5]
            + struct.pack("<I", flags)
            + (self._version() if flags & NTLMSSP_NEGOTIATE_VERSION else bytes(8))
        )
        body = b"".join(payload)
        if not with_mic:
            return header + body
        # §3.1.5.1.2: MIC over the three messages, with the MIC field zero.
        zeroed = header + bytes(16) + body
        messages = self._negotiate + challenge.raw + zeroed
        return header + _hmac_md5(exported, messages) + body

    def _account(self) -> tuple[str, str]:
        user, domain = self.user, self.domain
        if "\\" in user and not domain:
            domain, _, user = user.partition("\\")
        if not user:
            raise ValueError("NTLM user name is empty")
        return user, domain

    def _version(self) -> bytes:
        if len(self.version) != 8:
            raise ValueError("NTLM version must be 8 bytes")
        return bytes(self.version)

    @staticmethod
    def _fixed(value: bytes | None, size: int, what: str) -> bytes:
        if value is None:
            return secrets.token_bytes(size)
        if len(value) != size:
            raise ValueError(f"NTLM {what} must be {size} bytes")
        return bytes(value)


# --- choice ------------------------------------------------------------------

# Strongest first. NTLM and the OAuth mechanisms are left out: they are used
# only when the caller names them (see the module docstring).
PREFERENCE: tuple[str, ...] = (
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "CRAM-MD5",
    "PLAIN",
    "LOGIN",
)
MECHANISMS: dict[str, Callable[..., Mechanism]] = {
    "SCRAM-SHA-256": ScramSHA256,
    "SCRAM-SHA-1": ScramSHA1,
    "CRAM-MD5": CramMD5,
    "PLAIN": Plain,
    "LOGIN": Login,
    "NTLM": Ntlm,
    "XOAUTH2": XOAuth2,
    "OAUTHBEARER": OAuthBearer,
}


def create(name: str, user: str, secret: Token) -> Mechanism:
    """The mechanism ``name`` for ``user`` with a password or an OAuth token.

    Raises:
        ValueError: ``name`` is not a mechanism smtpc knows.
        TypeError: a callable secret for a mechanism that takes a password.
    """
    factory = MECHANISMS.get(name.upper())
    if factory is None:
        raise ValueError(f"unknown AUTH mechanism {name!r}")
    if callable(secret) and name.upper() not in ("XOAUTH2", "OAUTHBEARER"):
        raise TypeError(f"{name.upper()} takes a password string, not a callable")
    return factory(user, secret)


def choose(advertised: str, preference: tuple[str, ...] = PREFERENCE) -> list[str]:
    """The mechanisms to try, strongest first, among those the server offers."""
    offered = advertised.upper().split()
    return [name for name in preference if name in offered]
