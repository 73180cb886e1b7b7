"""The SSRF guard: webhook requests reach only public addresses, unless allowlisted.

The host name is resolved first, every address is checked (private, loopback, link-local, shared,
multicast, reserved and unspecified ranges are refused), and the connection is made to the checked
address itself, so a DNS answer that changes between check and connect (rebinding) cannot slip
through. TLS still verifies the certificate against the host name.
`FRONTDESK_WEBHOOK_ALLOWED_HOSTS` lists host names or CIDRs exempt from the check (a self-hosted
CRM on a private address).

The guard sits in the webhook client's connector (aiohttp, ADR 0017) at two points: the resolver
checks what a name resolves to, and the socket factory checks the address of every connection
just before it is made, which also covers URLs that name an IP address (those skip the resolver).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

import aiohttp
import anyio
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
USER_AGENT = "FrontDesk-Webhooks/1.0"


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


class Guard(AbstractResolver):
    """The connector's resolver and socket factory."""

    def __init__(self, allowlist: Allowlist) -> None:
        self.allowlist = allowlist
        # Addresses of allowlisted host names, which may be private: the socket factory lets
        # them through because the resolver vouched for them.
        self.vouched: set[IPAddress] = set()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = list(dict.fromkeys(await resolve(host, port)))
        checked(host, addresses, self.allowlist)  # every address passes, or none is used
        if self.allowlist.host_allowed(host):
            self.vouched.update(addresses)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None

    def allowed(self, address: IPAddress) -> bool:
        return (
            is_public(address) or self.allowlist.address_allowed(address) or address in self.vouched
        )

    def socket(self, addr_info: tuple[int, int, int, str, tuple[object, ...]]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not self.allowed(address):
            raise BlockedDestination(f"{address} is not a public address")
        return socket.socket(family=family, type=type_, proto=proto)


class WebhookClient:
    """The client every delivery goes through: one pool of kept-alive connections, no redirects
    followed, no proxies from the environment, and the guard on every connection.

    The aiohttp session is opened on first use, inside the running event loop."""

    def __init__(self, allowlist: Allowlist, *, timeout_s: float = 15.0, connections: int = 256):
        self.guard = Guard(allowlist)
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.connections,
            resolver=self.guard,
            socket_factory=self.guard.socket,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    @asynccontextmanager
    async def post(
        self, url: str, *, content: bytes, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        if self._session is None:
            self._session = self._open()
        async with self._session.post(
            url, data=content, headers=headers, allow_redirects=False
        ) as response:
            yield response

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def guarded_client(allowlist: Allowlist, *, timeout_s: float = 15.0) -> WebhookClient:
    return WebhookClient(allowlist, timeout_s=timeout_s)
