"""Many writers on one knowledge base: a save commits on top of the version it started from or is refused
with a clear error; the service redoes its jobs on the new version and serves what others wrote; reads can
be guarded by a key; a full disk leaves the current version whole.

The race test starts two writers (CLI processes, or a service job and a CLI process) on one KB at the same
moment, round after round, and checks the outcome against every serial order of the acknowledged writes:
an acknowledged change is never missing unless a later acknowledged write (a rollback) undid it."""

import errno
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving import DOCS, build_kb

from polyprag.errors import ConflictError, InputError
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.kb.lifecycle import history_dir, read_manifest, versions
from polyprag.lm.models import load_model
from polyprag.service.serve import API_KEY_ENV, GUARD_READS_ENV, READ_KEY_ENV, create_app

CLI = [sys.executable, "-c", "import sys; from polyprag.cli import main; sys.exit(main(sys.argv[1:]))", "-q"]
REFUSED = "changed while this change was being made"
ALL = {d.id for d in DOCS}  # version 1 of the master KB; version 2 lacks "glass"
ROUNDS = 4  # per kind of pair; 4 kinds of CLI pairs + the service pair = 20 rounds


@pytest.fixture(scope="module")
def master(tiny_chat_model_dir, tmp_path_factory) -> Path:
    """Version 1: the three documents; version 2 (current): "glass" removed, so a rollback to 1 changes it."""
    folder = build_kb(tiny_chat_model_dir, tmp_path_factory.mktemp("race") / "kb")
    kb = KnowledgeBase.load(folder, load_model(str(tiny_chat_model_dir)))
    kb.remove(["glass"])
    kb.save(folder)
    return folder


def copy_kb(master: Path, folder: Path) -> Path:
    shutil.copytree(master, folder)
    shutil.copytree(history_dir(master), history_dir(folder))
    return folder


def doc_file(folder: Path, doc_id: str) -> Path:
    path = folder / f"{doc_id}.jsonl"
    path.write_text(json.dumps({"id": doc_id, "title": doc_id, "text": f"{doc_id} was a harbour built in 1871."}) + "\n")
    return path


def command(op: tuple[str, str], kb: Path, model_dir: Path) -> list[str]:
    kind, arg = op
    if kind == "add":
        return ["add", str(kb), str(doc_file(kb.parent, arg)), "--model", str(model_dir), "--epochs", "1",
                "--augment-cache", str(kb.parent / f"{arg}-cache.jsonl")]
    if kind == "remove":
        return ["remove", str(kb), arg, "--model", str(model_dir)]
    return ["rollback", str(kb), arg]


def effect(docs: set[str], op: tuple[str, str]) -> set[str]:
    kind, arg = op
    return docs | {arg} if kind == "add" else docs - {arg} if kind == "remove" else set(ALL)


def serial_outcomes(start: set[str], ops: list[tuple[str, str]]) -> list[set[str]]:
    """The documents after each order of the acknowledged writes."""
    outcomes = []
    for order in itertools.permutations(ops):
        docs = set(start)
        for op in order:
            docs = effect(docs, op)
        outcomes.append(docs)
    return outcomes


def current_docs(folder: Path) -> set[str]:
    return {json.loads(line)["id"] for line in (folder / "docs.jsonl").read_text().splitlines()}


def finished(proc: subprocess.Popen) -> tuple[bool, str]:
    """(acknowledged, output); a writer either succeeds or is refused with the clear error, nothing else."""
    out, err = proc.communicate(timeout=600)
    text = " ".join((out + err).split())
    assert proc.returncode == 0 or (proc.returncode == 2 and REFUSED in text and "Traceback" not in text), text[-2000:]
    return proc.returncode == 0, text


PAIRS = [(("add", "new-a"), ("add", "new-b")), (("add", "new-a"), ("remove", "marlow")),
         (("add", "new-a"), ("rollback", "1")), (("remove", "marlow"), ("rollback", "1"))]


@pytest.mark.crash
def test_two_writers_at_once_never_lose_an_acknowledged_change(master, tiny_chat_model_dir, tmp_path):
    refused, report = 0, []
    for round_, pair in enumerate(p for p in PAIRS for _ in range(ROUNDS)):
        kb = copy_kb(master, tmp_path / f"round-{round_}" / "kb")
        start = current_docs(kb)
        procs = [subprocess.Popen(CLI + command(op, kb, tiny_chat_model_dir), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for op in pair]
        acked = [op for op, proc in zip(pair, procs) if finished(proc)[0]]
        refused += len(pair) - len(acked)
        final = {d.id for d in KnowledgeBase.load(kb, load_model(str(tiny_chat_model_dir))).docs}  # loads whole
        assert final in serial_outcomes(start, acked), (round_, pair, acked, final)
        report.append((pair, len(acked)))
    assert refused > 0, f"no writer was ever refused: the writers never overlapped, so nothing was tested {report}"
    print(f"{len(report)} rounds, {2 * len(report) - refused} writes acknowledged, {refused} refused: {report}")


@pytest.mark.crash
def test_a_service_job_and_a_cli_add_at_once_both_land_or_the_cli_is_refused(master, tiny_chat_model_dir, tmp_path):
    for round_ in range(ROUNDS):
        kb = copy_kb(master, tmp_path / f"round-{round_}" / "kb")
        client = TestClient(create_app(kb, watch_s=0.2), base_url="http://127.0.0.1")
        cli = subprocess.Popen(CLI + command(("add", "cli-doc"), kb, tiny_chat_model_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        job = client.post("/v1/documents", json={"documents": [{"id": "svc-doc", "title": "S", "text": "Svc was "
                                                                "a mill built in 1802."}]}).json()["job_id"]
        cli_acked = finished(cli)[0]
        deadline = time.monotonic() + 300
        while (status := client.get(f"/v1/jobs/{job}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["status"] == "done", status  # the job redoes itself on a newer version: it never loses
        final = current_docs(kb)
        assert "svc-doc" in final and ("cli-doc" in final) == cli_acked, (round_, cli_acked, final)
        disk = read_manifest(kb)["version"]
        deadline = time.monotonic() + 60
        while client.get("/health").json()["version"] != disk:  # the service serves what is current
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.get("/health").json()["n_docs"] == len(final)


def test_a_save_from_a_stale_version_is_refused_naming_both_versions(master, tiny_chat_model_dir, tmp_path):
    kb_dir = copy_kb(master, tmp_path / "kb")
    first, second = (KnowledgeBase.load(kb_dir, load_model(str(tiny_chat_model_dir))) for _ in range(2))
    first.remove(["marlow"])
    first.save(kb_dir)  # version 3
    second.remove(["velmark"])
    with pytest.raises(ConflictError, match=r"at version 2 when it was read and is now at version 3 \(remove 1 "
                                            r"\(marlow\)\).*run it again"):
        second.save(kb_dir)
    assert current_docs(kb_dir) == {"velmark"} and [v["version"] for v in versions(kb_dir)] == [1, 2, 3]
    KnowledgeBase.load(kb_dir, load_model(str(tiny_chat_model_dir))).save(kb_dir)  # starting again from the new version works
    second.save(tmp_path / "elsewhere")  # another folder: no base to check


def test_an_outside_change_is_served_and_the_next_job_starts_from_it(master, tiny_chat_model_dir, tmp_path):
    kb_dir = copy_kb(master, tmp_path / "kb")
    client = TestClient(create_app(kb_dir, watch_s=0.1), base_url="http://127.0.0.1")
    outside = KnowledgeBase.load(kb_dir, load_model(str(tiny_chat_model_dir)))
    outside.remove(["marlow"])
    outside.save(kb_dir)  # a CLI `remove` beside the server
    deadline = time.monotonic() + 60
    while client.get("/health").json()["version"] != 3:
        assert time.monotonic() < deadline, "the service never picked up version 3"
        time.sleep(0.1)
    assert client.get("/v1/documents/marlow").status_code == 404 and client.app.state.service.reloads == 1
    job = client.post("/v1/documents", json={"documents": [{"id": "x", "title": "X", "text": "X is a hill."}]})
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/jobs/{job.json()['job_id']}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "done" and status["version"] == 4
    assert current_docs(kb_dir) == {"velmark", "x"}  # built on version 3: the outside removal stays


def test_a_job_whose_save_conflicts_redoes_its_change_on_the_new_version(master, tiny_chat_model_dir, tmp_path,
                                                                         monkeypatch):
    kb_dir = copy_kb(master, tmp_path / "kb")
    client = TestClient(create_app(kb_dir, watch_s=0), base_url="http://127.0.0.1")
    real_add, calls = KnowledgeBase.add, []

    def add_while_another_writer_saves(self, docs, *args, **kwargs):
        calls.append(len(self.docs))
        if len(calls) == 1:  # the first attempt: someone else commits while this one trains
            other = KnowledgeBase.load(kb_dir, load_model(str(tiny_chat_model_dir)))
            other.remove(["marlow"])
            other.save(kb_dir)
        return real_add(self, docs, *args, **kwargs)

    monkeypatch.setattr(KnowledgeBase, "add", add_while_another_writer_saves)
    job = client.post("/v1/documents", json={"documents": [{"id": "x", "title": "X", "text": "X is a hill."}]})
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/jobs/{job.json()['job_id']}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "done" and calls == [2, 1]  # redone on version 3, which has one document fewer
    assert current_docs(kb_dir) == {"velmark", "x"} and client.get("/health").json()["version"] == 4


@pytest.mark.parametrize("env, headers, status", [
    ({READ_KEY_ENV: "r", API_KEY_ENV: "w"}, {}, 401),
    ({READ_KEY_ENV: "r", API_KEY_ENV: "w"}, {"X-API-Key": "wrong"}, 401),
    ({READ_KEY_ENV: "r", API_KEY_ENV: "w"}, {"X-API-Key": "r"}, 200),
    ({READ_KEY_ENV: "r", API_KEY_ENV: "w"}, {"X-API-Key": "w"}, 200),  # the write key reads too
    ({GUARD_READS_ENV: "1", API_KEY_ENV: "w"}, {}, 401),
    ({GUARD_READS_ENV: "1", API_KEY_ENV: "w"}, {"X-API-Key": "w"}, 200),
    ({API_KEY_ENV: "w"}, {}, 200),  # the default: reads open, writes guarded
])
def test_guarded_reads_need_a_key_on_every_endpoint_but_the_page(master, tmp_path, monkeypatch, env, headers, status):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = TestClient(create_app(copy_kb(master, tmp_path / "kb"), watch_s=0), base_url="http://127.0.0.1")
    reads = [client.get("/health", headers=headers), client.get("/v1/documents/velmark", headers=headers),
             client.post("/v1/answer", json={"question": "Who?", "max_new_tokens": 2}, headers=headers)]
    assert [r.status_code for r in reads] == [status] * 3, [r.json() for r in reads]
    if status == 401:
        assert "X-API-Key" in reads[0].json()["error"]
    assert client.get("/").status_code == 200  # the page holds no data; it sends the key the user types
    if headers.get("X-API-Key") == "r":  # a read key does not write
        r = client.delete("/v1/documents/velmark", headers=headers)
        assert r.status_code == 401


def test_guarded_reads_guard_the_api_docs_too(master, tmp_path, monkeypatch):
    monkeypatch.setenv(READ_KEY_ENV, "r")
    client = TestClient(create_app(copy_kb(master, tmp_path / "kb"), watch_s=0), base_url="http://127.0.0.1")
    for path in ("/docs", "/openapi.json"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-API-Key": "r"}).status_code == 200
    assert "/v1/answer" in client.get("/openapi.json", headers={"X-API-Key": "r"}).json()["paths"]


def test_a_read_key_alone_never_writes(master, tmp_path, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.setenv(READ_KEY_ENV, "r")
    kb = copy_kb(master, tmp_path / "kb")
    client = TestClient(create_app(kb, watch_s=0), base_url="http://127.0.0.1")
    key = {"X-API-Key": "r"}
    assert client.get("/v1/documents/velmark", headers=key).status_code == 200
    add = client.post("/v1/documents", json={"documents": [{"id": "x", "title": "X", "text": "X."}]}, headers=key)
    remove = client.delete("/v1/documents/velmark", headers=key)
    assert [add.status_code, remove.status_code] == [403, 403] and API_KEY_ENV in add.json()["error"]
    assert "x" not in current_docs(kb) and "velmark" in current_docs(kb)


def test_guarded_reads_without_any_key_refuse_to_start(master, tmp_path, monkeypatch):
    for name in (API_KEY_ENV, READ_KEY_ENV, GUARD_READS_ENV):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="guarded reads need a key"):
        create_app(copy_kb(master, tmp_path / "kb"), guard_reads=True)


def _save_with_file_size_limit(kb_dir: str, model_dir: str, limit: int) -> None:
    """In a child process: the file-size limit makes a write fail as a full disk would (EFBIG)."""
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    kb = KnowledgeBase.load(kb_dir, load_model(model_dir))
    kb.remove(["marlow"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        kb.save(kb_dir)
    except InputError as e:
        print(f"REFUSED {e}")
        sys.exit(2)
    sys.exit(0)


def test_a_save_that_runs_out_of_space_leaves_the_current_version_whole(master, tiny_chat_model_dir, tmp_path):
    kb_dir = copy_kb(master, tmp_path / "kb")
    before = {p.name: p.read_bytes() for p in kb_dir.iterdir() if p.is_file()}
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_concurrency as t; "
            f"t._save_with_file_size_limit({str(kb_dir)!r}, {str(tiny_chat_model_dir)!r}, 2000)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    message = " ".join(done.stdout.split())
    assert "not enough space" in message and "needs about" in message and "unchanged" in message, message
    assert {p.name: p.read_bytes() for p in kb_dir.iterdir() if p.is_file()} == before  # the current version
    assert not [p for p in kb_dir.parent.iterdir() if p.name.endswith(".tmp")]  # no staging folder left
    assert current_docs(kb_dir) == {"marlow", "velmark"}
    KnowledgeBase.load(kb_dir, load_model(str(tiny_chat_model_dir)))  # and it loads


def test_out_of_space_errors_are_recognised():
    from polyprag.kb.store import _out_of_space

    assert all(_out_of_space(OSError(e, os.strerror(e))) for e in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG))
    assert not _out_of_space(OSError(errno.EACCES, "denied"))


def _hold_lock(folder: str, shared: bool) -> None:
    """In a child process: take the folder's lock, say so, then sleep until killed."""
    from polyprag import atomic

    with atomic.folder_lock(folder, shared=shared):
        print("HELD", flush=True)
        time.sleep(600)


def _holder(folder: Path, shared: bool = False) -> subprocess.Popen:
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_concurrency as t; "
            f"t._hold_lock({str(folder)!r}, {shared})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def test_a_held_lock_makes_writers_wait_and_a_killed_holder_frees_it(tmp_path):
    from polyprag import atomic

    folder = tmp_path / "kb"
    folder.mkdir()
    holder = _holder(folder)
    with pytest.raises(InputError, match="stayed locked by another process for 0 s"):
        with atomic.folder_lock(folder, timeout_s=0.3):
            pass
    holder.kill()  # SIGKILL: no cleanup runs in the holder
    holder.wait()
    with atomic.folder_lock(folder, timeout_s=5):  # the kernel released it
        pass


def test_readers_share_the_lock_and_a_writer_waits_for_them(tmp_path):
    from polyprag import atomic

    folder = tmp_path / "kb"
    folder.mkdir()
    reader = _holder(folder, shared=True)
    try:
        with atomic.folder_lock(folder, shared=True, timeout_s=1):  # a second reader goes in at once
            pass
        with pytest.raises(InputError, match="stayed locked"):
            with atomic.folder_lock(folder, timeout_s=0.3):  # a writer waits for the reader
                pass
    finally:
        reader.kill()
        reader.wait()
    assert not (tmp_path / ".nope.lock").exists()
    with atomic.folder_lock(tmp_path / "nope", shared=True):  # reading a missing KB leaves no lock file
        pass
    assert not (tmp_path / ".nope.lock").exists()


def test_a_build_over_a_kb_says_which_version_it_replaced(tiny_chat_model_dir, tmp_path, capsys, monkeypatch):
    from polyprag import cli

    monkeypatch.setattr(cli.console, "width", 10_000)
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n"
                                                 for d in DOCS))
    argv = ["-q", "build", str(tmp_path / "docs.jsonl"), "--out", str(tmp_path / "kb"), "--model",
            str(tiny_chat_model_dir), "--epochs", "1", "--adapters", "2", "--rank", "2",
            "--augment-cache", str(tmp_path / "cache.jsonl")]
    assert cli.main(argv) == 0
    assert "held a knowledge base" not in capsys.readouterr().out
    assert cli.main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{tmp_path / 'kb'} held a knowledge base (version 1): the new build is version 2" in out
    assert f"polyprag rollback {tmp_path / 'kb'} 1" in out
