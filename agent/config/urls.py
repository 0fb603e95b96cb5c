"""Broker and endpoint addresses, parsed strictly (a wrong one is a clear error, never a silent default)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerUrl:
    """`mqtt://[user[:password]@]host[:port]` or `mqtts://...`, strictly; `ValueError` says what is wrong."""
    if "://" not in url:
        raise ValueError(f"{url!r} has no scheme: write mqtt://{url} (or mqtts:// for TLS)")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"scheme {parts.scheme!r} is not mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be scheme://host:port with nothing after the port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port: use 1-65535") from None
    if port == 0:
        raise ValueError("has an invalid port: use 1-65535")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, port or (8883 if tls else 1883), tls,
                     unquote(parts.username) if parts.username else None, unquote(parts.password) if parts.password else None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
