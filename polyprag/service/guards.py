"""The service's outer walls: ASGI middleware that runs before any route, so what it refuses costs little.

Order (outermost first): `Throttle` (clients that keep being refused wait), `HostAllowlist` (DNS rebinding),
`BodyLimit` (size and read time of the body). Starlette has no per-client throttle or body-size limit of its
own, hence these few lines.
"""

from __future__ import annotations

import asyncio
import time

from fastapi.responses import JSONResponse

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DRAIN_FACTOR = 16  # a refused body is read and dropped up to 16 × the limit; beyond, the connection is cut
BODY_READ_S = 30.0  # a body that has not fully arrived after this long gets 408 (a slow sender holds a connection)
MAX_CLIENTS = 10_000  # client addresses the throttle remembers at most (the least recently seen go first)
NOT_COUNTED = (404, 429)  # refusals that are not the client's misuse: a missing id, the server's own load


async def drain(receive, left: int) -> None:
    """Read and drop what the client is still sending (up to `left` bytes): a reply before its body is read
    makes the client's send fail with a reset, and it never sees the status that says why."""
    while left > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        left -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _declared_length(scope) -> int | None:
    declared = dict(scope["headers"]).get(b"content-length", b"0")
    return int(declared) if declared.isdigit() else None


class BodyLimit:
    """Refuse a body over `max_bytes` (413), by its Content-Length or by the bytes that arrive, and one that
    takes longer than `read_s` seconds to arrive (408)."""

    def __init__(self, app, max_bytes: int, read_s: float = BODY_READ_S):
        self.app, self.max_bytes, self.read_s = app, max_bytes, read_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _declared_length(scope)
        if declared is None or declared > self.max_bytes:
            return await self._refuse(scope, receive, send, pending=True)
        body, more, deadline = b"", True, time.monotonic() + self.read_s
        while more:  # read it all first (at most max_bytes): a chunked body has no Content-Length to trust
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                error = f"the request body did not arrive within {self.read_s:.0f} s; send it at once."
                return await JSONResponse({"error": error}, status_code=408, headers={"Connection": "close"})(
                    scope, receive, send)
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(scope, receive, send, pending=more)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, pending: bool):
        error = f"the request body is over {self.max_bytes:,} bytes; send fewer or shorter items per request."
        if pending:
            await drain(receive, DRAIN_FACTOR * self.max_bytes)
        await JSONResponse({"error": error}, status_code=413, headers={"Connection": "close"})(scope, receive, send)


class HostAllowlist:
    """Only requests whose Host header names this server pass (DNS rebinding: a page on attacker.example that
    resolves to 127.0.0.1 reaches a loopback server, but its requests carry Host: attacker.example)."""

    def __init__(self, app, hosts: tuple[str, ...]):
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "*" not in self.hosts:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host_name(host)
            if name not in self.hosts:
                error = (f"Host {host[:100]!r} is not a name this server answers to ({', '.join(sorted(self.hosts))}); "
                         f"if it is yours, restart the server with --allow-host {name or 'NAME'}.")
                await JSONResponse({"error": error}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """The name in a Host header, without its port: "[::1]:8000" -> "::1", "localhost:80" -> "localhost"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Throttle:
    """A client (by address) whose requests keep being refused is slowed down before it reaches the app.

    Each refusal (a 4xx but NOT_COUNTED) adds one to the client's count, which drains at `forgive_per_s`. At
    `max_refusals` its next requests wait `tarpit_s` (an idle sleep: no CPU) and get 429 + Retry-After without
    reaching the app, and count too. A client looping on refused requests then sends one per `tarpit_s` per
    connection instead of hundreds a second, and the CPU stays with the honest clients. Behind a reverse proxy
    every client has the proxy's address: run uvicorn with --proxy-headers so the client's own is used."""

    def __init__(self, app, max_refusals: int, tarpit_s: float, forgive_per_s: float = 1.0, drain_bytes: int = 0):
        self.app, self.max_refusals, self.tarpit_s = app, max_refusals, tarpit_s
        self.forgive_per_s, self.drain_bytes = forgive_per_s, drain_bytes
        self.counts: dict[str, tuple[float, float]] = {}  # address -> (refusals, when counted); oldest first

    def refusals(self, client: str, now: float) -> float:
        count, when = self.counts.get(client, (0.0, now))
        return max(0.0, count - (now - when) * self.forgive_per_s)

    def _count(self, client: str, now: float) -> None:
        count = min(self.refusals(client, now) + 1, 2 * self.max_refusals)  # capped: a client recovers in time
        self.counts.pop(client, None)
        self.counts[client] = (count, now)  # re-inserted: dict order is least recently seen first
        while len(self.counts) > MAX_CLIENTS:
            del self.counts[next(iter(self.counts))]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.max_refusals <= 0:
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown",))[0]
        if self.refusals(client, time.monotonic()) > self.max_refusals - 1:  # max_refusals of them, barely drained
            return await self._tarpit(client, scope, receive, send)
        status = 0

        async def watched(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watched)
        if 400 <= status < 500 and status not in NOT_COUNTED:
            self._count(client, time.monotonic())

    async def _tarpit(self, client: str, scope, receive, send) -> None:
        self._count(client, time.monotonic())
        await asyncio.sleep(self.tarpit_s)
        declared = _declared_length(scope)
        if declared is not None and declared <= self.drain_bytes:
            await drain(receive, self.drain_bytes)
        wait = max(1, round(self.max_refusals / self.forgive_per_s))
        error = (f"too many refused requests from {client} ({self.max_refusals} within seconds); fix the requests "
                 f"(each refusal said why) and retry in {wait} s.")
        await JSONResponse({"error": error}, status_code=429,
                           headers={"Retry-After": str(wait), "Connection": "close"})(scope, receive, send)
