"""Who the client is, by the X-Forwarded-* headers of trusted proxies only."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from . import keys
from .tenants import normalize_host, public_authority

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """The trusted proxies' networks."""
    return tuple(ipaddress.ip_network(net, strict=False) for net in trusted)


def is_trusted(peer: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether `peer` is an address in one of `networks`."""
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in net for net in networks)


def through_proxy(request: web.Request, trusted: tuple[str, ...]) -> bool:
    """Whether a trusted proxy passed the request on (it says whom for)."""
    return "X-Forwarded-For" in request.headers and is_trusted(
        request.remote or "", proxy_networks(trusted)
    )


def resolve_forwarded(request: web.Request, networks: tuple[IPNetwork, ...]) -> None:
    """Client address, public host (and with its port), scheme.

    X-Forwarded-For, -Host, -Proto and -Port count from trusted proxies only.
    """
    peer = request.remote or ""
    host = request.headers.get("Host", "")
    scheme = "http"
    client = peer
    port: str | None = None
    if is_trusted(peer, networks):
        chain = [
            ip.strip()
            for ip in request.headers.get("X-Forwarded-For", "").split(",")
            if ip.strip()
        ]
        # The right-most address not of a trusted proxy is the client.
        for ip in reversed(chain):
            client = ip
            if not is_trusted(ip, networks):
                break
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        if proto in ("http", "https"):
            scheme = proto
        port = request.headers.get("X-Forwarded-Port", "").split(",")[0]
    request[keys.CLIENT_IP] = client
    request[keys.PUBLIC_HOST] = normalize_host(host)
    request[keys.PUBLIC_AUTHORITY] = public_authority(host, scheme, port)
    request[keys.SCHEME] = scheme
