"""TLS contexts: certificates and host names are verified unless the caller
says otherwise."""

from __future__ import annotations

# ssl loads with the first context: is_loopback() does not need it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl


def default_context() -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name
    against the system's trusted certificates (TLS 1.2 or later)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def unverified_context() -> ssl.SSLContext:
    """A context that encrypts but trusts any certificate: only for servers
    whose identity the caller checks some other way."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback: ``localhost``, an
    address in 127.0.0.0/8 or ::1, or a Unix socket path."""
    import ipaddress

    if host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
