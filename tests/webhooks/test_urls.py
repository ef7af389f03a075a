"""Where webhooks may go (SSRF): outside development mode only to public addresses, by
the addresses a host resolves to, IPv4 and IPv6 alike. No database, no network: names
resolve through a resolver the test gives."""

from __future__ import annotations

import ipaddress

import pytest

from treu.webhooks import urls
from treu.webhooks.urls import HostUnresolved, IPAddress, UrlRefused, check


def resolver(table: dict[str, list[str]]) -> urls.Resolver:
    def resolve(host: str, port: int) -> list[IPAddress]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


NOWHERE = resolver({})


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.178.1", "private"),
        ("fd12:3456:789a::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not public"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 around 169.254.169.254
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str, reason: str) -> None:
    assert urls.refused_because(ipaddress.ip_address(address)) == reason
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(UrlRefused, match="public addresses only"):
        check(f"https://{literal}/hook", allow_private=False, resolve=NOWHERE)
    # … and allowed in development mode
    target = check(f"http://{literal}:8080/hook", allow_private=True, resolve=NOWHERE)
    assert target.addresses == (ipaddress.ip_address(address),)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert urls.refused_because(ipaddress.ip_address(address)) is None
    literal = f"[{address}]" if ":" in address else address
    target = check(f"https://{literal}/hook", allow_private=False, resolve=NOWHERE)
    assert (target.scheme, target.port) == ("https", 443)


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    resolve = resolver(
        {
            "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
            "sneaky.example.com": ["93.184.215.14", "10.0.0.7"],
            "metadata.example.com": ["fe80::a9fe:a9fe"],
        }
    )
    target = check("https://hooks.example.com/in", allow_private=False, resolve=resolve)
    assert target.host == "hooks.example.com"
    assert len(target.addresses) == 2
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.7 \(private\)"):
        check("https://sneaky.example.com/in", allow_private=False, resolve=resolve)
    with pytest.raises(UrlRefused, match="link-local"):
        check("http://metadata.example.com/in", allow_private=False, resolve=resolve)


def test_a_name_that_does_not_resolve_is_refused_as_unresolved() -> None:
    with pytest.raises(HostUnresolved, match="does not resolve"):
        check("https://nowhere.invalid/", allow_private=False, resolve=NOWHERE)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://93.184.215.14/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("93.184.215.14/hook", "only http and https"),
        ("https:///path-only", "names no host"),
        ("http://93.184.215.14:99999/", "not a valid URL"),
    ],
)
def test_only_web_addresses(url: str, message: str) -> None:
    with pytest.raises(UrlRefused, match=message):
        check(url, allow_private=True, resolve=NOWHERE)


def test_the_port_is_the_schemes_unless_given() -> None:
    assert check("http://8.8.8.8/", allow_private=False).port == 80
    assert check("HTTPS://8.8.8.8:8443/", allow_private=False).port == 8443
