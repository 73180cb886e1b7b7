"""The upstream responders' HTTP transport: httpx's, with aiohttp in place of httpcore's pool.

The `openai` SDK and the Dify responder speak httpx. `AiohttpTransport` is httpx's own
`AsyncHTTPTransport` (so its exception mapping and the OpenTelemetry httpx instrumentation, which
wraps that class, work as before) whose connection pool is an aiohttp session. httpcore's pool
scanned, and polled the socket of, every pooled connection on each request and each release, and
wrote a request's headers and body in separate sends: about 3 ms of CPU per streamed answer at 20
answers in flight, most of the upstream side's cost (decision 0024; the webhook client moved to
aiohttp for the same reason, decision 0017). aiohttp parses HTTP in C and pools per host.

`AiohttpPool` answers httpcore's pool interface (`handle_async_request(httpcore.Request)` →
`httpcore.Response` with a streamed body) and raises httpcore's exceptions, which httpx maps to
its own and the SDK to `APITimeoutError` / `APIConnectionError`. Bodies are passed through
undecoded, since httpx decodes `Content-Encoding` itself. TLS uses the context httpx would have
made (its CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR). HTTP(S)_PROXY and NO_PROXY from the
environment are honoured, as httpx's default client did (looked up once per host: aiohttp's own
`trust_env` would also read ~/.netrc on a thread for every request). Building a TLS context loads
the CA bundle, about 25 ms of the loop's time; every transport shares one (`tls_context`), built
when the app starts (`warm_tls_context`) rather than by the first visitor's answer, which paid for
two of them. The pool is put in place
through the transport's `_pool` attribute, the one private name used here:
tests/integration/test_upstream_responders.py and test_tracing.py fail if it ever moves.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpcore
import httpx
import yarl

# A connection is kept this long unused (httpx's default was 5 s).
KEEPALIVE_S = 30.0


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context httpx would make (its CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), one per
    process: every upstream transport verifies with it."""
    return httpx.create_ssl_context()


async def warm_tls_context() -> None:
    """Build the shared TLS context on a thread, so that no request waits for it."""
    await asyncio.to_thread(tls_context)


def _timeout(extensions: Mapping[str, Any]) -> aiohttp.ClientTimeout:
    """httpx's per-request timeouts (the SDK sets them on every request) in aiohttp's terms."""
    timeout = extensions.get("timeout") or {}
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeout.get("pool"),  # waiting for a free connection, then connecting
        sock_connect=timeout.get("connect"),
        sock_read=timeout.get("read"),
    )


def _url(url: httpcore.URL) -> yarl.URL:
    """httpx's URL, already percent-encoded: aiohttp must not quote it again."""
    host = url.host.decode("ascii")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    port = f":{url.port}" if url.port is not None else ""
    return yarl.URL(
        f"{url.scheme.decode('ascii')}://{host}{port}{url.target.decode('ascii')}", encoded=True
    )


def _read_error(error: BaseException) -> Exception:
    if isinstance(error, TimeoutError):
        return httpcore.ReadTimeout(str(error) or "read timed out")
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return httpcore.RemoteProtocolError(str(error) or type(error).__name__)
    return httpcore.ReadError(str(error) or type(error).__name__)


class _Body:
    """A response body as it arrives. Read to its end, the connection goes back to the pool;
    closed before, the connection is dropped."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _read_error(exc) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpPool:
    """httpcore's pool interface over one aiohttp session, opened on the first request inside the
    running event loop."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _proxy(self, url: yarl.URL) -> str | None:
        key = (url.scheme, url.host or "")
        if key not in self._proxies:
            bypass = urllib.request.proxy_bypass(key[1]) if key[1] else True
            self._proxies[key] = None if bypass else urllib.request.getproxies().get(key[0])
        return self._proxies[key]

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                keepalive_timeout=KEEPALIVE_S,
                ttl_dns_cache=60,
                ssl=tls_context(),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                # httpx has already set every header it means to send.
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        session = self._open()
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        url = _url(request.url)
        try:
            response = await session.request(
                request.method.decode("ascii"),
                url,
                proxy=self._proxy(url),
                headers=headers,
                data=body or None,
                timeout=_timeout(request.extensions),
                allow_redirects=False,
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "connect timed out") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _read_error(exc) from exc
        return httpcore.Response(
            response.status,
            headers=list(response.raw_headers),
            content=_Body(response),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AiohttpPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AiohttpTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, max_connections: int = 500) -> None:
        super().__init__(verify=tls_context())  # httpx would build its own context otherwise
        self._pool = AiohttpPool(max_connections)  # type: ignore[assignment]
