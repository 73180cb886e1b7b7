"""The SSRF guard: webhook requests reach only public addresses, unless allowlisted.

The host name is resolved first, every address is checked (private, loopback, link-local, shared,
multicast, reserved and unspecified ranges are refused), and the connection is made to the checked
address itself, so a DNS answer that changes between check and connect (rebinding) cannot slip
through. TLS still verifies the certificate against the host name.
`FRONTDESK_WEBHOOK_ALLOWED_HOSTS` lists host names or CIDRs exempt from the check (a self-hosted
CRM on a private address).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedDestination(Exception):
    pass


class Allowlist:
    def __init__(self, spec: str) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            try:
                self.networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                self.hosts.add(part.lower().rstrip("."))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def address_allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address in ipaddress.ip_network("100.64.0.0/10")
    )


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0])) for info in infos]


def checked(host: str, addresses: Iterable[IPAddress], allowlist: Allowlist) -> IPAddress:
    addresses = list(addresses)
    if not addresses:
        raise BlockedDestination(f"{host} does not resolve")
    if allowlist.host_allowed(host):
        return addresses[0]
    for address in addresses:
        if not (is_public(address) or allowlist.address_allowed(address)):
            raise BlockedDestination(f"{host} resolves to a non-public address ({address})")
    return addresses[0]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address."""

    def __init__(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = checked(host, await resolve(host, port), self.allowlist)
        return await self.inner.connect_tcp(
            str(address), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise BlockedDestination("unix sockets are not webhook destinations")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_client(allowlist: Allowlist, *, timeout_s: float = 15.0) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(retries=0)
    # httpx has no public hook for the network backend; its pool takes one at construction.
    transport._pool = httpcore.AsyncConnectionPool(
        network_backend=GuardedBackend(allowlist), max_connections=200, retries=0
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        headers={"User-Agent": "FrontDesk-Webhooks/1.0"},
    )
