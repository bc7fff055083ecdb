"""The serving state: one knowledge base, its model, the answers waiting for it and the jobs that change it.

Concurrency: the model answers one generation at a time, under one lock (mixing weights are context-local,
but the compute is the bottleneck and batching pays); requests that arrive meanwhile wait together and are
answered in shared generation batches. A
job never trains on the serving model: it loads its own copy of the KB (one extra model in memory while it
runs), adds or removes documents, saves the new version to the same folder (`KnowledgeBase.save` is
atomic), then swaps the serving reference under the lock. Queries are answered all the while; jobs run one
at a time on a worker thread, their registry kept in memory.

Other writers (a CLI `add`, a second server on the same folder): a job whose save finds that the folder
moved on since it loaded it (ConflictError) loads the new version and does its change again, up to
JOB_ATTEMPTS times; a watcher thread checks the folder's current version every WATCH_S seconds and, when
it is not the one serving, loads it and swaps it in (requests wait for the swap only, none is dropped).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..lm.answer import Answer
from .api import ApiError, JobOut, Limits
from ..text.corpus import Document
from ..errors import ConflictError, InputError
from ..lm.generate import GenerationConfig
from ..lm.models import SERVE_DTYPE
from ..kb.knowledge import KnowledgeBase, growth_for
from ..modes import KB_MODES, MODES
from ..kb.lifecycle import KEEP_VERSIONS, read_manifest
from ..readers import reader
from ..text.retrieve import Hit

log = logging.getLogger("polyprag")

JOB_ATTEMPTS = 5  # a job's change redone on a newer version at most this often before it fails
KEEP_JOBS = 1000  # finished jobs the registry remembers (dicts keep insertion order: the oldest go first)
WATCH_S = 1.0  # how often the folder's current version is compared with the serving one


@dataclass
class Job:
    kind: Literal["add", "remove"]
    documents: list[Document] | list[str]  # new documents, or ids to remove
    grow: int | str = 0  # an addition: adapters to grow, or "auto"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: Literal["queued", "running", "done", "failed"] = "queued"
    error: str | None = None
    version: int | None = None
    seconds: float | None = None

    def out(self) -> JobOut:
        ids = [d.id if isinstance(d, Document) else d for d in self.documents]
        return JobOut(job_id=self.id, kind=self.kind, status=self.status, documents=ids, error=self.error,
                      version=self.version, seconds=self.seconds)


# what a request gets: the KB that answered, hits, answers, mixing weights (Q, G, M) or None
Answered = tuple[KnowledgeBase, list[list[Hit]], list[Answer], torch.Tensor | None]


@dataclass(eq=False)  # compared by identity: two requests may ask the same thing
class Pending:
    """One answer request waiting for the model, and, once answered, its result or error."""

    questions: list[str]
    mode: str
    k: int
    max_new_tokens: int
    done: threading.Event = field(default_factory=threading.Event)
    result: tuple | None = None
    error: Exception | None = None


def public_name(spec: str) -> str:
    """A model's name for clients: a bundled name or hub id as given, a local folder by its last part only (the
    server's paths are nobody else's business)."""
    path = Path(spec)
    return path.name if path.is_absolute() or spec.startswith(".") or os.sep in spec and path.exists() else spec


def kb_version(kb: KnowledgeBase) -> int:
    return kb.manifest.version  # a KB saved before versions existed is version 1


class Service:
    def __init__(self, folder: str | Path, model: str | None, watch_s: float = WATCH_S, device: str = "cpu",
                 dtype: str = SERVE_DTYPE, max_waiting: int = Limits.max_waiting, max_jobs: int = Limits.max_jobs,
                 keep_versions: int = KEEP_VERSIONS, augment_url: str = ""):
        self.folder, self.model, self.device, self.dtype = Path(folder), model, device, dtype
        self.augment_url = augment_url  # the augmentation server the operator named (`--augment-url`)
        self.max_waiting, self.max_jobs, self.keep_versions = max_waiting, max_jobs, keep_versions
        self.admitted_questions = 0  # questions of requests in flight, waiting or answering (`admitted`)
        self.kb = self._load()
        self.lock = threading.Lock()  # guards self.kb and the model: one generation at a time
        self.pending: list[Pending] = []  # answer requests waiting for the model
        self.pending_lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.queue: queue.Queue[Job] = queue.Queue()
        self.reloads = 0  # versions written by others and picked up by the watcher
        threading.Thread(target=self._work, name="polyprag-jobs", daemon=True).start()
        if watch_s > 0:
            threading.Thread(target=self._watch, args=(watch_s,), name="polyprag-watch", daemon=True).start()

    @contextmanager
    def admitted(self, n_questions: int):
        """Count a request's questions from the moment it arrives (before it waits for a worker thread): beyond
        max_waiting, 503 + Retry-After at once."""
        with self.pending_lock:
            if self.admitted_questions + n_questions > self.max_waiting:
                raise ApiError(503, f"{self.max_waiting} questions are already waiting for the model; retry in a "
                                    "few seconds.", retry_after_s=5)
            self.admitted_questions += n_questions
        try:
            yield
        finally:
            with self.pending_lock:
                self.admitted_questions -= n_questions

    def locked(self, f, *args):
        """f(*args) under the model lock: the tokenizer is not safe to share with a generation running."""
        with self.lock:
            return f(*args)

    def _load(self) -> KnowledgeBase:
        kb = KnowledgeBase.load(self.folder, self.model, self.device, self.dtype)
        kb.trust_augment_url(self.augment_url)
        return kb

    def answer(self, questions: list[str], mode: str, k: int, max_new_tokens: int, wait_s: float) -> Answered:
        """Answers with the KB serving now: (that KB, hits, answers, mixing weights (Q, G, M) or None).

        Requests that arrive while the model is busy wait together; whoever gets the model next answers all
        of them in shared generation batches (rows carry their own routing), so throughput grows with load."""
        return self.wait(self.enqueue(questions, mode, k, max_new_tokens), wait_s)

    def enqueue(self, questions: list[str], mode: str, k: int, max_new_tokens: int) -> Pending:
        item = Pending(questions, mode, k, max_new_tokens)
        with self.pending_lock:  # bounded by `admitted`, which counts every request from its arrival
            self.pending.append(item)
        return item

    def withdraw(self, item: Pending) -> bool:
        """Drop a request whose client went away, if no generation has taken it yet (True: dropped)."""
        with self.pending_lock:
            if item not in self.pending:
                return False
            self.pending.remove(item)
        item.error = ApiError(499, "the client closed the connection before its answer began.")
        item.done.set()
        return True

    def wait(self, item: Pending, wait_s: float) -> Answered:
        """Until `item` is answered: by this thread, with the model, or by whoever holds it now."""
        deadline = time.monotonic() + wait_s
        while not item.done.is_set():
            if not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                with self.pending_lock:
                    if item in self.pending:  # nobody took it: give up
                        self.pending.remove(item)
                        raise ApiError(503, f"the model was busy for {wait_s:.0f} s; retry later.", retry_after_s=10)
                # taken by the request answering now: it finishes soon, but never wait unbounded
                if not item.done.wait(timeout=wait_s):
                    raise ApiError(503, f"no answer within {2 * wait_s:.0f} s; retry later.", retry_after_s=10)
                break
            try:
                if not item.done.is_set():
                    with self.pending_lock:
                        batch, self.pending = self.pending, []
                    self._answer_all(batch)
            finally:
                self.lock.release()
        if item.error is not None:
            raise item.error
        return item.result

    def _answer_all(self, items: list[Pending]) -> None:
        """Under the lock: one generation per (mode, max_new_tokens) group; each item gets its result or error."""
        groups: dict[tuple[str, int], list[Pending]] = {}
        for it in items:
            groups.setdefault((it.mode, it.max_new_tokens), []).append(it)
        for (mode, max_new_tokens), group in groups.items():
            generation = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=16)
            try:
                self._answer_group(group, mode, generation)
            except Exception as e:
                if len(group) == 1:
                    group[0].error = e
                else:  # one request's fault must not fail the others batched with it: each alone
                    log.warning("a batch of %d requests failed (%s); answering each alone", len(group), e)
                    self._answer_all_alone(group, mode, generation)
            for it in group:
                it.done.set()

    def _answer_all_alone(self, group: list[Pending], mode: str, generation: GenerationConfig) -> None:
        for it in group:
            try:
                self._answer_group([it], mode, generation)
            except Exception as e:  # this request's own error; the server goes on
                it.error = e

    def _answer_group(self, group: list[Pending], mode: str, generation: GenerationConfig) -> None:
        kb = self.kb
        questions = [q for it in group for q in it.questions]
        hits = [h for it in group for h in ([[] for _ in it.questions] if not MODES[mode].retrieves
                                             else kb.retrieve(it.questions, it.k))]
        answers = reader(mode, kb.lm, kb.docs, kb).answer(questions, hits, generation, progress=False)
        weights = kb.weights(hits, mode) if mode in KB_MODES else None  # (Q, G, M)
        start = 0
        for it in group:
            end = start + len(it.questions)
            it.result = (kb, hits[start:end], answers[start:end], None if weights is None else weights[start:end])
            start = end

    def submit(self, job: Job) -> JobOut:
        with self.pending_lock:
            if self.queue.qsize() >= self.max_jobs:
                raise ApiError(429, f"{self.max_jobs} jobs are already queued; wait for them (GET /v1/jobs/ID) and "
                                    "send this change again, or send more documents per job.", retry_after_s=30)
            self._forget_finished()
            self.jobs[job.id] = job
            out = job.out()  # before the worker can touch it: a new job always reads "queued"
            self.queue.put(job)
        return out

    def _forget_finished(self) -> None:
        """The registry keeps every unfinished job and the last KEEP_JOBS finished ones (oldest forgotten)."""
        finished = [k for k, j in self.jobs.items() if j.status in ("done", "failed")]
        for k in finished[: max(len(finished) - KEEP_JOBS + 1, 0)]:
            del self.jobs[k]

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            job.status, start = "running", time.perf_counter()
            version, error = None, None
            try:
                version = self._run(job)
            except InputError as e:
                error = str(e)
            except Exception:  # a failed job must not stop the worker
                log.exception("job %s (%s) failed", job.id, job.kind)
                error = "the job failed unexpectedly; the server log has the details."
            # The status last: a poller that sees "done" or "failed" sees the rest of the outcome too.
            job.version, job.error, job.seconds = version, error, round(time.perf_counter() - start, 2)
            job.status = "failed" if error else "done"

    def _run(self, job: Job) -> int:
        for attempt in range(1, JOB_ATTEMPTS + 1):
            kb = self._load()  # a private copy: training must not touch the layers that answer queries
            if job.kind == "add":
                grow = growth_for(len(job.documents), kb.manifest) if job.grow == "auto" else job.grow
                kb.add(job.documents, progress=False, grow=grow)
            else:
                kb.remove(job.documents)
            try:
                kb.save(self.folder, self.keep_versions)
                break
            except ConflictError as e:  # another writer saved first: redo the change on its version
                if attempt == JOB_ATTEMPTS:
                    raise InputError(f"{e} (tried {JOB_ATTEMPTS} times; the folder keeps changing)") from None
                log.info("job %s: the knowledge base changed meanwhile; redoing it on the new version", job.id)
        self._serve(kb)
        log.info("job %s: %s %d document(s); now %d documents", job.id, job.kind, len(job.documents), len(kb.docs))
        return kb_version(kb)

    def _serve(self, kb: KnowledgeBase) -> None:
        """Answer from `kb` from now on, if it is still the folder's current version."""
        with self.lock:
            if kb_version(kb) == self._disk_version():
                self.kb = kb

    def _disk_version(self) -> int | None:
        try:
            manifest = read_manifest(self.folder)
        except (InputError, OSError):  # mid-swap or damaged: keep serving what we have
            return None
        return None if manifest is None else int(manifest["version"])

    def _watch(self, every_s: float) -> None:
        """Pick up versions written by other processes (CLI add/remove/rollback, another server)."""
        while True:
            time.sleep(every_s)
            disk = self._disk_version()
            if disk is None or disk == kb_version(self.kb):
                continue
            try:
                kb = self._load()
            except Exception:  # a half-visible or damaged version: try again on the next tick
                log.exception("could not load %s's version %s; still serving version %s", self.folder, disk,
                              kb_version(self.kb))
                continue
            self._serve(kb)
            if self.kb is kb:
                self.reloads += 1
                log.info("%s changed outside this server: now serving version %d (%d documents)", self.folder,
                         kb_version(kb), len(kb.docs))
