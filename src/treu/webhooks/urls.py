"""Which URLs webhooks may be sent to (server-side request forgery).

An admin who registers an endpoint chooses where Treu's worker sends requests from
inside its own network. Outside development mode a URL is refused when its host is, or
resolves to, an address that is not public: loopback, private (10/8, 172.16/12,
192.168/16, fc00::/7), link-local (169.254/16 — the cloud metadata services —
fe80::/10), shared (100.64/10), multicast, reserved or unspecified; IPv4 addresses
written inside IPv6 (``::ffff:127.0.0.1``) are judged as the IPv4 address they carry.

The check runs when the endpoint is registered or changed (a 422 at once) and again
before every connection a send opens, because what a name resolves to can change (DNS
rebinding): the connection goes to an address just checked, so the name cannot resolve
to something else between the check and the connection (``treu.webhooks.channel``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

SCHEMES = {"http": 80, "https": 443}


class UrlRefused(ValueError):
    """Never to be sent to (a wrong scheme, a non-public address)."""


class HostUnresolved(UrlRefused):
    """The host has no address now (may be temporary)."""


def system_resolver(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in found:
            found.append(address)
    return found


def refused_because(address: IPAddress) -> str | None:
    """Why ``address`` is no place to send a webhook to (None: it is public)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return refused_because(embedded)
    for name, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return name
    if not address.is_global:  # 100.64.0.0/10 (carrier-grade NAT) and the like
        return "not public"
    return None


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]
    """The checked addresses, the ones a send may connect to (in the resolver's order)."""


def parse(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)``; raises ``UrlRefused`` for what is no web address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"{url!r} is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused(f"only http and https URLs can receive webhooks, not {scheme or url!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused(f"{url!r} names no host")
    return scheme, host, port or SCHEMES[scheme]


def check(url: str, *, allow_private: bool, resolve: Resolver = system_resolver) -> Target:
    """``url`` parsed, its host resolved and every address judged (``allowed``)."""
    scheme, host, port = parse(url)
    found = allowed(host, port, allow_private=allow_private, resolve=resolve)
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(found))


def allowed(
    host: str, port: int, *, allow_private: bool, resolve: Resolver = system_resolver
) -> list[IPAddress]:
    """The addresses of ``host``; raises ``UrlRefused`` if any is not public (a name
    that also points inside is not to be trusted), ``HostUnresolved`` if it has none."""
    found = _literal(host)
    if found is None:
        try:
            found = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise HostUnresolved(f"the host {host!r} does not resolve ({exc})") from exc
    if not found:
        raise HostUnresolved(f"the host {host!r} has no address")
    if not allow_private:
        for address in found:
            reason = refused_because(address)
            if reason is not None:
                raise UrlRefused(
                    f"the host {host!r} is {address} ({reason}): webhooks are sent to "
                    "public addresses only"
                )
    return found


def _literal(host: str) -> list[IPAddress] | None:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return None
