"""The service's outer walls (polyprag.service.guards) on a stand-in app: no model needed."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from polyprag.service import guards
from polyprag.service.guards import BodyLimit, Throttle


def app_with_throttle(max_refusals: int = 3, tarpit_s: float = 0.2, forgive_per_s: float = 1.0) -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    def ok() -> dict:
        return {"ok": True}

    @app.get("/bad")
    def bad():
        from fastapi import HTTPException
        raise HTTPException(422, "bad")

    @app.get("/missing")
    def missing():
        from fastapi import HTTPException
        raise HTTPException(404, "no such thing")

    app.add_middleware(Throttle, max_refusals=max_refusals, tarpit_s=tarpit_s, forgive_per_s=forgive_per_s)
    return app


def test_a_client_that_keeps_being_refused_waits_and_gets_429_while_others_do_not():
    app = app_with_throttle(max_refusals=3, tarpit_s=0.2, forgive_per_s=0.01)
    hostile = TestClient(app, client=("10.0.0.9", 1))
    honest = TestClient(app, client=("10.0.0.10", 1))
    assert [hostile.get("/bad").status_code for _ in range(3)] == [422] * 3
    t0 = time.monotonic()
    r = hostile.get("/ok")  # even a good request waits: the client is slowed, not the request
    assert r.status_code == 429 and time.monotonic() - t0 >= 0.2
    assert int(r.headers["Retry-After"]) >= 1 and "10.0.0.9" in r.json()["error"]
    assert honest.get("/bad").status_code == 422 and honest.get("/ok").status_code == 200


def test_missing_ids_are_not_misuse_and_refusals_are_forgiven_with_time():
    app = app_with_throttle(max_refusals=2, tarpit_s=0.05, forgive_per_s=20)
    client = TestClient(app, client=("10.0.0.11", 1))
    assert [client.get("/missing").status_code for _ in range(10)] == [404] * 10
    assert [client.get("/bad").status_code for _ in range(2)] == [422, 422]
    assert client.get("/ok").status_code == 429
    time.sleep(0.3)  # 20 refusals forgiven a second: the count (capped at 2 × 2) is gone
    assert client.get("/ok").status_code == 200


def test_throttle_off_and_the_remembered_clients_bounded(monkeypatch):
    off = TestClient(app_with_throttle(max_refusals=0), client=("10.0.0.12", 1))
    assert [off.get("/bad").status_code for _ in range(5)] == [422] * 5
    monkeypatch.setattr(guards, "MAX_CLIENTS", 3)
    app = app_with_throttle(max_refusals=5)
    for i in range(6):
        TestClient(app, client=(f"10.0.1.{i}", 1)).get("/bad")
    throttle = app.middleware_stack  # built at the first request
    while not isinstance(throttle, Throttle):
        throttle = throttle.app
    assert list(throttle.counts) == ["10.0.1.3", "10.0.1.4", "10.0.1.5"]


async def _run(middleware, receive) -> list[dict]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"10")]}
    await middleware(scope, receive, send)
    return sent


def test_a_body_that_does_not_arrive_in_time_is_408():
    async def never():  # a client that sent its headers and then nothing
        await asyncio.Event().wait()

    async def app(scope, receive, send):
        raise AssertionError("the app must not be reached")

    sent = asyncio.run(_run(BodyLimit(app, max_bytes=1000, read_s=0.1), never))
    assert sent[0]["status"] == 408 and b"within" in sent[1]["body"]


@pytest.mark.parametrize("chunks", [[b"0123456789"], [b"01234", b"56789"]])
def test_a_body_that_arrives_in_time_reaches_the_app_whole(chunks):
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0)

    seen = []

    async def app(scope, receive, send):
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = asyncio.run(_run(BodyLimit(app, max_bytes=1000, read_s=5), receive))
    assert seen == [b"0123456789"] and sent[0]["status"] == 200
