"""SASL mechanisms: the published test vectors, then whole AUTH exchanges
against an aiosmtpd server on loopback that implements each mechanism."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiosmtpd.smtp import MISSING, SMTP, AuthResult
from servers import AUTH_PASSWORD, AUTH_USER, RecordingHandler, SMTPServer

import smtpc
from smtpc import auth, cli

# --- RFC 1320 §A.5: MD4 in both core twins -------------------------------------

MD4_VECTORS = [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "043f8582f241db351ce627e153e7f0e4",
    ),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
]


@pytest.mark.parametrize(("data", "digest"), MD4_VECTORS)
def test_md4_rfc1320_vectors(core_impl: ModuleType, data: bytes, digest: str) -> None:
    assert core_impl.md4(data).hex() == digest
    assert core_impl.md4(bytearray(data)).hex() == digest


def test_md4_twins_agree_across_block_boundaries(core_impl: ModuleType) -> None:
    from smtpc import _core_py

    for size in (55, 56, 63, 64, 65, 119, 120, 128, 1000):
        data = bytes(range(256)) * 4
        assert core_impl.md4(data[:size]) == _core_py.md4(data[:size])


def test_md4_refuses_text(core_impl: ModuleType) -> None:
    with pytest.raises(TypeError, match="expected a bytes-like object, not str"):
        core_impl.md4("abc")


# --- RFC 5802 §5 and RFC 7677 §3: SCRAM -----------------------------------------

SCRAM_VECTORS = [
    (
        auth.ScramSHA1,
        "fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
        "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    ),
    (
        auth.ScramSHA256,
        "rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
]


@pytest.mark.parametrize(
    ("cls", "nonce", "server_first", "client_final", "server_final"), SCRAM_VECTORS
)
def test_scram_rfc_example(
    cls: type[auth.ScramSHA1],
    nonce: str,
    server_first: str,
    client_final: str,
    server_final: str,
) -> None:
    mech = cls("user", "pencil", nonce=nonce)
    assert mech.respond(None) == f"n,,n=user,r={nonce}".encode()
    assert mech.respond(server_first.encode()) == client_final.encode()
    assert mech.respond(server_final.encode()) == b""
    mech.finish()


@pytest.mark.parametrize(
    ("cls", "nonce", "server_first", "client_final", "server_final"), SCRAM_VECTORS
)
def test_scram_wrong_server_signature_is_refused(
    cls: type[auth.ScramSHA1],
    nonce: str,
    server_first: str,
    client_final: str,
    server_final: str,
) -> None:
    mech = cls("user", "pencil", nonce=nonce)
    mech.respond(None)
    mech.respond(server_first.encode())
    forged = "v=" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(auth.ServerProofError, match="server signature"):
        mech.respond(forged.encode())
    with pytest.raises(auth.ServerProofError):
        mech.finish()


def test_scram_refuses_a_nonce_the_server_did_not_extend() -> None:
    mech = auth.ScramSHA256("user", "pencil", nonce="abc")
    mech.respond(None)
    with pytest.raises(auth.ChallengeError, match="nonce"):
        mech.respond(b"r=xyz123,s=QSXCR+Q6sek8bf92,i=4096")


def test_scram_refuses_an_absurd_iteration_count() -> None:
    mech = auth.ScramSHA256("user", "pencil", nonce="abc")
    mech.respond(None)
    with pytest.raises(auth.ChallengeError, match="iteration count"):
        mech.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4000000000")


def test_scram_escapes_and_prepares_the_user_name() -> None:
    mech = auth.ScramSHA1("a=b,c\u00ad", "pencil", authzid="x,y", nonce="N")
    assert mech.respond(None) == b"n,a=x=2Cy,n=a=3Db=2Cc,r=N"


@pytest.mark.parametrize(
    ("text", "prepared"),
    [
        # RFC 4013 §3 examples.
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),
    ],
)
def test_saslprep_rfc4013_examples(text: str, prepared: str) -> None:
    assert auth.saslprep(text) == prepared


@pytest.mark.parametrize("text", ["\u0007", "\u0627\u0031", "\u00ad", "a\ufffdb"])
def test_saslprep_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="password"):
        auth.saslprep(text, "password")


def test_scram_refuses_a_prohibited_password_before_sending() -> None:
    with pytest.raises(ValueError, match="password holds a character"):
        auth.ScramSHA256("user", "bell\u0007").respond(None)


# --- MS-NLMP §4.2.4: NTLMv2 ----------------------------------------------------

# §4.2.4.3: the CHALLENGE_MESSAGE of the example (no timestamp AV pair).
SPEC_CHALLENGE = bytes.fromhex(
    "4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef"
    "00000000000000002400240044000000060070170000000f5300650072007600"
    "6500720002000c0044006f006d00610069006e0001000c005300650072007600"
    "6500720000000000"
)
# §4.2.4.1.3 / §4.2.4.2.2: temp, and the NTLMv2 response that starts with
# NTProofStr.
SPEC_TEMP = bytes.fromhex(
    "0101000000000000"
    "0000000000000000"
    "aaaaaaaaaaaaaaaa"
    "00000000"
    "02000c0044006f006d00610069006e00"
    "01000c00530065007200760065007200"
    "00000000"
    "00000000"
)
SPEC_NT_PROOF = bytes.fromhex("68cd0ab851e51c96aabc927bebef6a1c")
SPEC_LM_RESPONSE = bytes.fromhex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
SPEC_ENCRYPTED_KEY = bytes.fromhex("c5dad2544fc9799094ce1ce90bc9d03e")
# §4.2.4.3: the whole AUTHENTICATE_MESSAGE.
SPEC_AUTHENTICATE = bytes.fromhex(
    "4e544c4d5353500003000000180018006c00000054005400840000000c000c00"
    "480000000800080054000000100010005c00000010001000d8000000358288e2"
    "0501280a0000000f44006f006d00610069006e00550073006500720043004f00"
    "4d005000550054004500520086c35097ac9cec102554764a57cccc19aaaaaaaa"
    "aaaaaaaa68cd0ab851e51c96aabc927bebef6a1c010100000000000000000000"
    "00000000aaaaaaaaaaaaaaaa0000000002000c0044006f006d00610069006e00"
    "01000c005300650072007600650072000000000000000000c5dad2544fc97990"
    "94ce1ce90bc9d03e"
)


def spec_ntlm() -> auth.Ntlm:
    # §4.2.1's inputs. The negotiate flags are those the example ends with,
    # plus OEM, which the AUTHENTICATE flags drop once UNICODE is chosen.
    return auth.Ntlm(
        "User",
        "Password",
        domain="Domain",
        workstation="COMPUTER",
        negotiate_flags=0xE2888237,
        version=bytes.fromhex("0501280a0000000f"),
        client_challenge=b"\xaa" * 8,
        random_session_key=b"\x55" * 16,
        timestamp=0,
    )


def test_ntowfv2_spec_value() -> None:
    key = auth.ntowfv2("Password", "User", "Domain")
    assert key.hex() == "0c868a403bfd7a93a3001ef22ef02e3f"


def test_ntlmv2_spec_proof_and_response() -> None:
    key = auth.ntowfv2("Password", "User", "Domain")
    server_challenge = bytes.fromhex("0123456789abcdef")
    proof = hmac.new(key, server_challenge + SPEC_TEMP, "md5").digest()
    assert proof == SPEC_NT_PROOF
    # §4.2.4.1.2: SessionBaseKey.
    base_key = hmac.new(key, proof, "md5").digest()
    assert base_key.hex() == "8de40ccadbc14a82f15cb0ad0de95ca3"


def test_ntlm_authenticate_message_fields_match_the_spec() -> None:
    mech = spec_ntlm()
    mech.respond(None)
    message = mech.respond(SPEC_CHALLENGE)
    assert message is not None
    fields = parse_authenticate(message)
    assert fields["lm"] == SPEC_LM_RESPONSE
    assert fields["nt"] == SPEC_NT_PROOF + SPEC_TEMP
    assert fields["domain"] == "Domain".encode("utf-16-le")
    assert fields["user"] == "User".encode("utf-16-le")
    assert fields["workstation"] == "COMPUTER".encode("utf-16-le")
    assert fields["key"] == SPEC_ENCRYPTED_KEY
    assert fields["flags"] == 0xE2888235
    assert message == SPEC_AUTHENTICATE


def test_ntlm_challenge_parsing() -> None:
    challenge = auth.NtlmChallenge.parse(SPEC_CHALLENGE)
    assert challenge.flags == 0xE28A8233
    assert challenge.server_challenge == bytes.fromhex("0123456789abcdef")
    assert challenge.timestamp is None
    for broken in (b"NTLMSSP\0", SPEC_CHALLENGE[:40] + b"\xff" * 8, b"x" * 48):
        with pytest.raises(auth.ChallengeError):
            auth.NtlmChallenge.parse(broken)


def test_ntlm_domain_from_user_name() -> None:
    mech = auth.Ntlm("Domain\\User", "Password", client_challenge=b"\xaa" * 8)
    mech.respond(None)
    fields = parse_authenticate(mech.respond(SPEC_CHALLENGE) or b"")
    assert fields["domain"] == "Domain".encode("utf-16-le")
    assert fields["nt"][:16] != SPEC_NT_PROOF  # our own clock, not the spec's 0


# --- no credential in repr() ---------------------------------------------------


def test_repr_hides_credentials() -> None:
    mechanisms = [
        auth.Plain("u", "SECRET"),
        auth.Login("u", "SECRET"),
        auth.CramMD5("u", "SECRET"),
        auth.ScramSHA1("u", "SECRET"),
        auth.ScramSHA256("u", "SECRET"),
        auth.Ntlm("u", "SECRET"),
        auth.XOAuth2("u", "SECRET"),
        auth.OAuthBearer("u", "SECRET"),
    ]
    for mech in mechanisms:
        mech.respond(None)
        assert "SECRET" not in repr(mech)


def test_oauth_token_checks() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        auth.XOAuth2("u", "").respond(None)
    with pytest.raises(TypeError, match="must be a str"):
        auth.OAuthBearer("u", lambda: 42).respond(None)  # type: ignore[arg-type, return-value]  # not a str on purpose
    with pytest.raises(ValueError, match="unknown AUTH mechanism"):
        auth.create("GSSAPI", "u", "p")


def test_oauthbearer_initial_response() -> None:
    mech = auth.OAuthBearer("u@example.com", "T0K", host="mx.example.net", port=587)
    assert mech.respond(None) == (
        b"n,a=u@example.com,\x01host=mx.example.net\x01port=587\x01"
        b"auth=Bearer T0K\x01\x01"
    )


# --- a server for every mechanism -----------------------------------------------

TOKEN = "ya29.valid-token"
OAUTH_ERROR = {"status": "401", "schemes": "bearer", "scope": "https://mail/"}
NTLM_DOMAIN = "EXAMPLE"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class AuthHandler(RecordingHandler):
    """RecordingHandler that also speaks SCRAM, XOAUTH2, OAUTHBEARER and NTLM
    for AUTH_USER, with AUTH_PASSWORD or TOKEN; ``scram_mode`` makes the
    SCRAM server misbehave ("forge" a signature, or "skip" server-final)."""

    auth: bool = True
    scram_mode: str = "honest"
    # The client's answers to the OAuth error challenges.
    oauth_answers: list[bytes] = field(default_factory=list)
    tokens_seen: list[str] = field(default_factory=list)

    async def _first(self, server: SMTP, args: list[str]) -> bytes | None:
        if len(args) == 2:
            return b"" if args[1] == "=" else base64.b64decode(args[1])
        answer = await server.challenge_auth("")
        return None if answer is MISSING else answer

    async def _scram(
        self, server: SMTP, args: list[str], digest: str, name: str
    ) -> AuthResult:
        first = await self._first(server, args)
        if first is None:
            return AuthResult(success=False, handled=True)
        gs2, _, bare = first.decode().partition(",,")
        attrs = dict(part.split("=", 1) for part in bare.split(","))
        nonce = attrs["r"] + secrets.token_urlsafe(12)
        salt = secrets.token_bytes(16)
        server_first = f"r={nonce},s={b64(salt)},i=4096"
        answer = await server.challenge_auth(server_first)
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        without_proof, _, proof = answer.decode().rpartition(",p=")
        salted = hashlib.pbkdf2_hmac(digest, AUTH_PASSWORD.encode(), salt, 4096)
        client_key = hmac.new(salted, b"Client Key", digest).digest()
        stored = hashlib.new(digest, client_key).digest()
        message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored, message, digest).digest()
        expected = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if attrs["n"] != AUTH_USER or base64.b64decode(proof) != expected:
            return AuthResult(success=False, handled=False)
        server_key = hmac.new(salted, b"Server Key", digest).digest()
        verifier = hmac.new(server_key, message, digest).digest()
        if self.scram_mode == "forge":
            verifier = secrets.token_bytes(len(verifier))
        if self.scram_mode != "skip":
            final = await server.challenge_auth(f"v={b64(verifier)}")
            if final is MISSING:
                return AuthResult(success=False, handled=True)
        self.logins.append((name, AUTH_USER))
        return AuthResult(success=True, auth_data=AUTH_USER)

    # aiosmtpd names the mechanism after the method: "__" is "-".
    async def auth_SCRAM__SHA__256(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._scram(server, args, "sha256", "SCRAM-SHA-256")

    async def auth_SCRAM__SHA__1(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._scram(server, args, "sha1", "SCRAM-SHA-1")

    async def _oauth(
        self, server: SMTP, name: str, user: str, token: str
    ) -> AuthResult:
        self.tokens_seen.append(token)
        if user == AUTH_USER and token == TOKEN:
            self.logins.append((name, user))
            return AuthResult(success=True, auth_data=user)
        answer = await server.challenge_auth(json.dumps(OAUTH_ERROR))
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        self.oauth_answers.append(answer)
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        first = await self._first(server, args)
        if first is None:
            return AuthResult(success=False, handled=True)
        user_part, auth_part, *_ = first.decode().split("\x01")
        user = user_part.removeprefix("user=")
        token = auth_part.removeprefix("auth=Bearer ")
        return await self._oauth(server, "XOAUTH2", user, token)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        first = await self._first(server, args)
        if first is None:
            return AuthResult(success=False, handled=True)
        gs2, *pairs = first.decode().split("\x01")
        assert gs2.startswith("n,a=") and gs2.endswith(",")
        values = dict(p.split("=", 1) for p in pairs if p)
        token = values["auth"].removeprefix("Bearer ")
        return await self._oauth(server, "OAUTHBEARER", gs2[4:-1], token)

    async def auth_NTLM(self, server: SMTP, args: list[str]) -> AuthResult:
        negotiate = await self._first(server, args)
        if negotiate is None:
            return AuthResult(success=False, handled=True)
        assert negotiate[:12] == b"NTLMSSP\0\x01\0\0\0"
        challenge = ntlm_challenge()
        message = await server.challenge_auth(challenge)
        if message is MISSING:
            return AuthResult(success=False, handled=True)
        if not ntlm_valid(negotiate, challenge, message):
            return AuthResult(success=False, handled=False)
        self.logins.append(("NTLM", AUTH_USER))
        return AuthResult(success=True, auth_data=AUTH_USER)


def parse_authenticate(message: bytes) -> dict[str, Any]:
    def field_at(offset: int) -> bytes:
        length, _, start = struct.unpack_from("<HHI", message, offset)
        return message[start : start + length]

    names = ("lm", "nt", "domain", "user", "workstation", "key")
    fields: dict[str, Any] = {
        name: field_at(12 + 8 * i) for i, name in enumerate(names)
    }
    fields["flags"] = struct.unpack_from("<I", message, 60)[0]
    return fields


def ntlm_challenge() -> bytes:
    # A challenge as Exchange sends it: target info with a timestamp.
    info = b""
    for av_id, value in (
        (2, NTLM_DOMAIN.encode("utf-16-le")),
        (1, b"M\0X\0"),
        (7, struct.pack("<Q", 133_000_000_000_000_000)),
    ):
        info += struct.pack("<HH", av_id, len(value)) + value
    info += bytes(4)
    flags = 0xE28A8235
    header = b"NTLMSSP\0" + struct.pack("<IHHII", 2, 0, 0, 56, flags)
    header += secrets.token_bytes(8) + bytes(8)
    header += struct.pack("<HHI", len(info), len(info), 56) + bytes(8)
    return header + info


def ntlm_valid(negotiate: bytes, challenge: bytes, message: bytes) -> bool:
    fields = parse_authenticate(message)
    user = fields["user"].decode("utf-16-le")
    domain = fields["domain"].decode("utf-16-le")
    nt_hash = smtpc.core.md4(AUTH_PASSWORD.encode("utf-16-le"))
    key = hmac.new(nt_hash, (user.upper() + domain).encode("utf-16-le"), "md5")
    proof, temp = fields["nt"][:16], fields["nt"][16:]
    expected = hmac.new(key.digest(), challenge[24:32] + temp, "md5").digest()
    if user != AUTH_USER or domain != NTLM_DOMAIN or proof != expected:
        return False
    # MS-NLMP §3.1.5.1.2: with a server timestamp, no LMv2 response, the
    # server's timestamp in temp, MsvAvFlags saying "MIC", and the MIC.
    assert fields["lm"] == bytes(24)
    assert temp[8:16] == struct.pack("<Q", 133_000_000_000_000_000)
    assert b"\x06\x00\x04\x00\x02\x00\x00\x00" in temp
    base_key = hmac.new(key.digest(), proof, "md5").digest()
    zeroed = message[:72] + bytes(16) + message[88:]
    mic = hmac.new(base_key, negotiate + challenge + zeroed, "md5").digest()
    assert message[72:88] == mic
    return True


@pytest.fixture
def auth_server(smtp_server: Callable[..., SMTPServer]) -> Callable[..., SMTPServer]:
    def start(**kwargs: Any) -> SMTPServer:
        return smtp_server(auth=True, handler=AuthHandler(**kwargs))

    return start


def connect(server: SMTPServer) -> smtpc.SMTP:
    return smtpc.SMTP(server.host, server.port, timeout=10)


# --- whole exchanges -----------------------------------------------------------


def test_login_prefers_scram_sha_256(auth_server: Callable[..., SMTPServer]) -> None:
    server = auth_server()
    with connect(server) as client:
        offered = client.esmtp_features if client.ehlo()[0] == 250 else {}
        assert "SCRAM-SHA-256" in offered["auth"]
        assert client.login(AUTH_USER, AUTH_PASSWORD)[0] == 235
    assert server.handler.logins == [("SCRAM-SHA-256", AUTH_USER)]


@pytest.mark.parametrize("name", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
@pytest.mark.parametrize("initial_response_ok", [True, False])
def test_scram_exchange(
    auth_server: Callable[..., SMTPServer], name: str, initial_response_ok: bool
) -> None:
    server = auth_server()
    with connect(server) as client:
        code, _ = client.login(
            AUTH_USER,
            AUTH_PASSWORD,
            mechanism=name,
            initial_response_ok=initial_response_ok,
        )
        assert code == 235
    assert server.handler.logins == [(name, AUTH_USER)]


def test_scram_wrong_password(auth_server: Callable[..., SMTPServer]) -> None:
    server = auth_server()
    with connect(server) as client:
        with pytest.raises(smtpc.SMTPAuthenticationError) as info:
            client.login(AUTH_USER, "wrong")
        assert info.value.smtp_code == 535
        # No weaker mechanism was tried after the 535.
        assert server.handler.logins == []
        assert client.noop()[0] == 250


def test_scram_forged_server_signature_fails_and_cancels(
    auth_server: Callable[..., SMTPServer],
) -> None:
    server = auth_server(scram_mode="forge")
    with connect(server) as client:
        with pytest.raises(smtpc.SMTPServerProofError) as info:
            client.login(AUTH_USER, AUTH_PASSWORD)
        assert info.value.smtp_code == 501  # the reply to "*"
        assert "server signature does not match" in str(info.value)
        assert AUTH_PASSWORD not in str(info.value)
        # Cancelled, not authenticated, and no fallback to PLAIN.
        assert server.handler.logins == []
        assert client.noop()[0] == 250


def test_scram_server_that_skips_its_proof_fails(
    auth_server: Callable[..., SMTPServer],
) -> None:
    server = auth_server(scram_mode="skip")
    with connect(server) as client:
        client.ehlo()
        mech = auth.ScramSHA256(AUTH_USER, AUTH_PASSWORD)
        with pytest.raises(smtpc.SMTPServerProofError) as info:
            client.auth("SCRAM-SHA-256", mech)
        assert info.value.smtp_code == 235
        assert "without proving" in str(info.value)


def test_auth_accepts_mechanism_objects(auth_server: Callable[..., SMTPServer]) -> None:
    server = auth_server()
    with connect(server) as client:
        client.ehlo()
        mech = auth.ScramSHA1(AUTH_USER, AUTH_PASSWORD)
        assert client.auth("SCRAM-SHA-1", mech)[0] == 235
    with connect(server) as client:
        mech256 = auth.ScramSHA256(AUTH_USER, AUTH_PASSWORD)
        assert client.login(AUTH_USER, "unused", mechanism=mech256)[0] == 235
    assert [m for m, _ in server.handler.logins] == ["SCRAM-SHA-1", "SCRAM-SHA-256"]


def test_smtplib_style_auth_object_still_works(
    auth_server: Callable[..., SMTPServer],
) -> None:
    server = auth_server()
    with connect(server) as client:
        client.ehlo()
        client.user, client.password = AUTH_USER, AUTH_PASSWORD
        assert client.auth("PLAIN", client.auth_plain)[0] == 235


@pytest.mark.parametrize("name", ["XOAUTH2", "OAUTHBEARER"])
def test_oauth_success_with_fresh_token_each_attempt(
    auth_server: Callable[..., SMTPServer], name: str
) -> None:
    server = auth_server()
    calls: list[int] = []

    def fresh() -> str:
        calls.append(1)
        return TOKEN

    for _ in range(2):
        with connect(server) as client:
            assert client.login(AUTH_USER, fresh, mechanism=name)[0] == 235
    assert len(calls) == 2
    assert server.handler.logins == [(name, AUTH_USER)] * 2


@pytest.mark.parametrize(
    ("name", "answer"), [("XOAUTH2", b""), ("OAUTHBEARER", b"\x01")]
)
def test_oauth_error_json_flow(
    auth_server: Callable[..., SMTPServer], name: str, answer: bytes
) -> None:
    server = auth_server()
    with connect(server) as client:
        with pytest.raises(smtpc.SMTPAuthenticationError) as info:
            client.login(AUTH_USER, "expired-token", mechanism=name)
        assert info.value.smtp_code == 535
        assert info.value.detail == (
            f"{name} error: status=401, scope=https://mail/, schemes=bearer"
        )
        assert "status=401" in str(info.value)
        assert "expired-token" not in str(info.value)
        assert client.noop()[0] == 250
    assert server.handler.oauth_answers == [answer]


def test_ntlm_exchange(auth_server: Callable[..., SMTPServer]) -> None:
    server = auth_server()
    user = f"{NTLM_DOMAIN}\\{AUTH_USER}"
    with connect(server) as client:
        assert client.login(user, AUTH_PASSWORD, mechanism="NTLM")[0] == 235
    assert server.handler.logins == [("NTLM", AUTH_USER)]


def test_ntlm_wrong_password(auth_server: Callable[..., SMTPServer]) -> None:
    server = auth_server()
    with connect(server) as client:
        mech = auth.Ntlm(AUTH_USER, "wrong", domain=NTLM_DOMAIN)
        with pytest.raises(smtpc.SMTPAuthenticationError) as info:
            client.login(AUTH_USER, "wrong", mechanism=mech)
        assert info.value.smtp_code == 535
    assert server.handler.logins == []


def test_login_refuses_a_mechanism_the_server_does_not_offer(
    smtp_server: Callable[..., SMTPServer],
) -> None:
    server = smtp_server(auth=True)  # PLAIN, LOGIN and CRAM-MD5 only
    with connect(server) as client:
        with pytest.raises(
            smtpc.SMTPException, match="does not offer AUTH NTLM; it offers CRAM-MD5"
        ):
            client.login(AUTH_USER, AUTH_PASSWORD, mechanism="NTLM")
        with pytest.raises(ValueError, match="unknown AUTH mechanism"):
            client.login(AUTH_USER, AUTH_PASSWORD, mechanism="OAUTH10A")
        with pytest.raises(TypeError, match="token callable"):
            client.login(AUTH_USER, lambda: TOKEN)
        assert client.login(AUTH_USER, AUTH_PASSWORD)[0] == 235
    assert server.handler.logins == [("CRAM-MD5", AUTH_USER)]


def test_no_credential_in_logs(
    auth_server: Callable[..., SMTPServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = auth_server()
    caplog.set_level(logging.DEBUG, logger="smtpc")
    for name, secret in (
        ("SCRAM-SHA-256", AUTH_PASSWORD),
        ("NTLM", AUTH_PASSWORD),
        ("XOAUTH2", TOKEN),
        ("OAUTHBEARER", TOKEN),
        ("PLAIN", AUTH_PASSWORD),
    ):
        user = f"{NTLM_DOMAIN}\\{AUTH_USER}" if name == "NTLM" else AUTH_USER
        with connect(server) as client:
            client.login(user, secret, mechanism=name)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "AUTH XOAUTH2 ****" in text
    for secret in (AUTH_PASSWORD, TOKEN, b64(TOKEN.encode())[:12]):
        assert secret not in text


# --- CLI -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["env", "command"])
def test_cli_token_sources(
    auth_server: Callable[..., SMTPServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
) -> None:
    server = auth_server()
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.com\r\nTo: b@example.org\r\n\r\nhi\r\n")
    if source == "env":
        monkeypatch.setenv("SMTPC_TEST_TOKEN", TOKEN)
        token_args = ["--token-env", "SMTPC_TEST_TOKEN"]
    else:
        command = f"{sys.executable} -c \"print('{TOKEN}')\""
        token_args = ["--token-command", command]
    code = cli.main(
        [
            "send",
            "--server",
            f"{server.host}:{server.port}",
            "--user",
            AUTH_USER,
            "--auth-mechanism",
            "OAUTHBEARER",
            *token_args,
            str(message),
        ]
    )
    assert code == 0
    assert server.handler.logins == [("OAUTHBEARER", AUTH_USER)]
    out, err = capsys.readouterr()
    assert TOKEN not in out + err


def test_cli_auth_mechanism_with_password(
    auth_server: Callable[..., SMTPServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = auth_server()
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@example.com\r\nTo: b@example.org\r\n\r\nhi\r\n")
    monkeypatch.setenv("SMTP_PASSWORD", AUTH_PASSWORD)
    argv = ["send", "--server", f"{server.host}:{server.port}", "--user", AUTH_USER]
    argv += ["--auth-mechanism", "SCRAM-SHA-1", str(message)]
    assert cli.main(argv) == 0
    assert server.handler.logins == [("SCRAM-SHA-1", AUTH_USER)]
