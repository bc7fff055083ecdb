"""Shared by the service tests: a tiny knowledge base on disk, and the real server on a loopback port."""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import uvicorn

from polyprag.adapters import InventoryConfig
from polyprag.corpus import Document
from polyprag.kb import BuildConfig, KnowledgeBase
from polyprag.models import load_model
from polyprag.train import TrainConfig

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell."),
        Document("glass", "Glass harp", "The glass harp was invented in 1741 by Richard Pockrich in Dublin.")]
NEW = {"id": "pell", "title": "Orrin Pell", "text": "Orrin Pell was a painter born in 1901 in Velmark."}
NEW_QUESTION = "Which painter was born in 1901?"
CONFIG = BuildConfig(inventory=InventoryConfig(n_adapters=4, rank=2), training=TrainConfig(epochs=2, batch_size=4))


def build_kb(model_dir: Path, folder: Path) -> Path:
    KnowledgeBase.build(DOCS, load_model(str(model_dir)), CONFIG, progress=False).save(folder)
    return folder


@contextmanager
def live_server(app) -> Iterator[str]:
    """uvicorn in a thread on a socket bound before it starts (no race for the port); yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def call(method: str, url: str, body: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
    """One JSON request with the standard library: (status, decoded body), errors included."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
