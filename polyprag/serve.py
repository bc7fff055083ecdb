"""HTTP service over one knowledge base: answer questions, add and remove documents as jobs, a web page.

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

import asyncio
import hmac
import logging
import math
import os
import queue
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal, get_args

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from .answer import Answer
from .generate import GenerationConfig
from .guards import DRAIN_FACTOR, LOOPBACK_HOSTS, BodyLimit, HostAllowlist, Throttle, host_name
from .corpus import Document, validate_id
from .errors import ConflictError, InputError
from .kb import POLY_MODES, KnowledgeBase, growth_for
from .lifecycle import KEEP_VERSIONS, read_manifest
from .prompts import ANSWER_PREFIX, build_prompt
from .readers import reader
from .retrieve import Hit

log = logging.getLogger("polyprag")

API_KEY_ENV = "POLYPRAG_API_KEY"  # the write key: adding and removing documents need it
READ_KEY_ENV = "POLYPRAG_READ_KEY"  # set: every endpoint but the page needs this key or the write key
GUARD_READS_ENV = "POLYPRAG_GUARD_READS"  # "1": every endpoint but the page needs the write key (= --guard-reads)
MAX_GROW = 64  # adapters one request may add
JOB_ATTEMPTS = 5  # a job's change redone on a newer version at most this often before it fails
KEEP_JOBS = 1000  # finished jobs the registry remembers (dicts keep insertion order: the oldest go first)
DISCONNECT_POLL_S = 0.5  # how often a request waiting for the model checks that its client is still there
WATCH_S = 1.0  # how often the folder's current version is compared with the serving one
Mode = Literal["poly", "poly-combine", "poly-uniform", "rag", "closed-book"]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000
    max_question_chars: int = 2000
    max_k: int = 20
    max_questions: int = 32
    max_new_tokens: int = 128
    # a request's compute budget: passages read (questions × k, each at most PASSAGE_TOKENS) and tokens generated
    max_passages: int = 64
    max_generated_tokens: int = 1024
    max_documents: int = 100  # per request
    max_doc_chars: int = 100_000
    top_adapters: int = 8  # adapters listed in a mixing summary
    answer_wait_s: float = 120.0  # longest wait for the model (answers are serialised) before a 503
    # questions waiting for the model at most; beyond, 503 + Retry-After (each waiting request holds a thread)
    max_waiting: int = 64
    max_jobs: int = 16  # add/remove jobs queued at most; beyond, 429 + Retry-After
    max_refusals: int = 20  # refused requests a client may send in a burst before it is slowed (guards.Throttle)
    tarpit_s: float = 1.0  # how long a slowed client's request waits before its 429 (0 refusals: no throttle)


# ---------------------------------------------------------------- schemas

def _utf8(text: str) -> str:
    """Refused at the edge: JSON may carry lone surrogates ("\\ud800") that no tokenizer or file can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"holds {text[e.start:e.end]!r} at position {e.start}, which is not valid Unicode text "
                         "(a lone surrogate); send text that encodes as UTF-8") from None
    return text


Text = Annotated[str, AfterValidator(_utf8)]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Text | None = None
    questions: list[Text] | None = None
    k: int = 3
    mode: Mode = "poly"
    max_new_tokens: int = 32


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: Text | list[ContentPart] | None = None  # a string, or OpenAI's content parts ({"type": "text", "text": ...})


class ChatRequest(BaseModel):
    """OpenAI's chat completion request. Sampling fields (temperature, top_p, ...) are accepted and ignored
    (decoding is greedy); fields that would change the answer polyprag cannot honour (UNSUPPORTED: tools, stop,
    response_format, logprobs...) are refused. The mode is the model name, or the extra field "mode"."""

    model_config = ConfigDict(extra="allow")
    model: Text = "polyprag"
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stream: bool = False
    n: int = 1
    mode: Mode | None = None
    k: int = 3


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Text
    title: Text = ""
    text: Text


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[DocumentIn]
    # 0: Poly-z (routing rows only); N or "auto": N fresh adapters trained on these documents (`add --grow`)
    grow: int | Literal["auto"] = 0


class AdapterWeight(BaseModel):
    adapter: int
    weight: float


class Mixing(BaseModel):
    """The mixing weights averaged over adapted layers: the heaviest adapters and how spread they are."""

    top: list[AdapterWeight]
    entropy: float  # mean over layers of each layer's entropy (nats)
    max_entropy: float  # ln M: every adapter weighted 1/M


class Retrieved(BaseModel):
    id: str
    title: str
    score: float
    snippet: str


class AnswerOut(BaseModel):
    question: str
    answer: str
    raw: str
    documents: list[Retrieved]
    mixing: Mixing | None  # None in rag and closed-book: no adapters used


class AnswerResponse(BaseModel):
    mode: str
    k: int
    version: int
    answers: list[AnswerOut]


class DocumentOut(BaseModel):
    id: str
    title: str
    text: str
    mixing: Mixing


class JobOut(BaseModel):
    job_id: str
    kind: Literal["add", "remove"]
    status: Literal["queued", "running", "done", "failed"]
    documents: list[str]
    error: str | None = None
    version: int | None = None  # the KB version the job saved
    seconds: float | None = None


class Health(BaseModel):
    ok: bool
    n_docs: int
    version: int
    model: str
    jobs_queued: int


# ---------------------------------------------------------------- the serving state

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
                 dtype: str = "float32", max_waiting: int = Limits.max_waiting, max_jobs: int = Limits.max_jobs,
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
        hits = [h for it in group for h in ([[] for _ in it.questions] if mode == "closed-book"
                                             else kb.retrieve(it.questions, it.k))]
        answers = reader(mode, kb.lm, kb.docs, kb).answer(questions, hits, generation, progress=False)
        weights = kb.weights(hits, mode) if mode in POLY_MODES else None  # (Q, G, M)
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


def mixing_summary(weights: torch.Tensor, top: int) -> Mixing:
    """weights (G, M), each row summing to 1 → the top adapters by mean weight, and the mean row entropy."""
    mean = weights.mean(0)  # (M,)
    order = torch.argsort(mean, descending=True)[:top]
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean()
    return Mixing(top=[AdapterWeight(adapter=int(i), weight=round(float(mean[i]), 5)) for i in order],
                  entropy=round(float(entropy), 5), max_entropy=round(math.log(weights.shape[1]), 5))


# ---------------------------------------------------------------- validation at the edge

class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status, self.retry_after_s = status, retry_after_s


async def answered(request: Request, service: Service, questions: list[str], mode: str, k: int,
                   max_new_tokens: int, wait_s: float) -> Answered:
    """service.answer in a worker thread. A client that disconnects while its questions wait withdraws them, so
    nobody's compute goes to an answer nobody reads (a generation already running finishes: batches are not cut)."""
    item = service.enqueue(questions, mode, k, max_new_tokens)
    task = asyncio.ensure_future(run_in_threadpool(service.wait, item, wait_s))
    while not (await asyncio.wait({task}, timeout=DISCONNECT_POLL_S))[0]:
        if await request.is_disconnected() and service.withdraw(item):
            task.add_done_callback(lambda t: t.exception())  # its thread ends on its own; nobody awaits it
            raise item.error
    return task.result()


def _check(ok: bool, message: str, status: int = 422) -> None:
    if not ok:
        raise ApiError(status, message)


def checked_questions(req: AnswerRequest, limits: Limits) -> list[str]:
    _check((req.question is None) != (req.questions is None),
           'give either "question": "..." or "questions": ["...", ...], not both or neither.')
    questions = [req.question] if req.question is not None else req.questions
    _check(0 < len(questions) <= limits.max_questions,
           f"{len(questions)} questions; send 1 to {limits.max_questions} per request.")
    for i, q in enumerate(questions):
        _check(bool(q.strip()), f"question {i} is empty; write a question.")
        _check(len(q) <= limits.max_question_chars,
               f"question {i} has {len(q)} characters; shorten it to at most {limits.max_question_chars}.")
    _check(1 <= req.k <= limits.max_k, f"k={req.k} is out of range; use 1 to {limits.max_k}.")
    _check(1 <= req.max_new_tokens <= limits.max_new_tokens,
           f"max_new_tokens={req.max_new_tokens} is out of range; use 1 to {limits.max_new_tokens}.")
    n = len(questions)
    _check(n * req.k <= limits.max_passages, f"{n} questions × k={req.k} = {n * req.k} passages to read; the "
                                             f"budget is {limits.max_passages} per request: send fewer questions "
                                             "per request or a smaller k.", 413)
    _check(n * req.max_new_tokens <= limits.max_generated_tokens,
           f"{n} questions × max_new_tokens={req.max_new_tokens} = {n * req.max_new_tokens} tokens to generate; the "
           f"budget is {limits.max_generated_tokens} per request: send fewer questions or fewer new tokens.", 413)
    return questions


def checked_documents(req: DocumentsRequest, kb: KnowledgeBase, limits: Limits) -> list[Document]:
    docs = req.documents
    _check(0 < len(docs) <= limits.max_documents,
           f"{len(docs)} documents; send 1 to {limits.max_documents} per request.")
    seen: set[str] = set()
    for i, d in enumerate(docs):
        _check(bool(d.id.strip()) and d.id == d.id.strip(),
               f"documents[{i}].id={d.id[:80]!r}: give a non-empty id without surrounding spaces.")
        try:
            validate_id(d.id, f"documents[{i}]")  # the rule the command line applies to a corpus file
        except InputError as e:
            raise ApiError(422, str(e)) from None
        _check(d.id not in seen, f"documents[{i}].id={d.id!r} appears twice in this request; make ids unique.")
        _check(bool(d.text.strip()), f"documents[{i}] ({d.id!r}) has no text; add text.")
        _check(len(d.text) <= limits.max_doc_chars, f"documents[{i}] ({d.id!r}) has {len(d.text)} characters of "
               f"text; split it into documents of at most {limits.max_doc_chars}.")
        _check(d.id not in kb.row, f"document {d.id!r} is already in the knowledge base; DELETE "
               f"/v1/documents/{d.id} first, or give it another id.", status=400)
        seen.add(d.id)
    return [Document(d.id, d.title.strip(), d.text.strip()) for d in docs]


def _validation_message(e: RequestValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err["loc"] if x != "body") or "body"
        got = repr(err.get("input"))
        parts.append(f"{where}: {err['msg']} (got {got[:80] + '…' if len(got) > 80 else got})")
    return "; ".join(parts) + ". See /docs for the request schema."


# ---------------------------------------------------------------- the app

async def require_key(request: Request) -> None:
    """Mutations need X-API-Key when POLYPRAG_API_KEY is set (read per request, so a restart is not needed). A
    server with only a read key refuses every write: a key configured means writes are guarded."""
    key = os.environ.get(API_KEY_ENV)
    if not key and os.environ.get(READ_KEY_ENV):
        raise ApiError(403, f"this server has a read key ({READ_KEY_ENV}) and no write key, so it refuses writes; "
                            f"restart it with {API_KEY_ENV} set to add or remove documents.")
    if key and not _key_matches(request, key):
        raise ApiError(401, "missing or wrong X-API-Key header; send the key the server was started with.")


async def require_read_key(request: Request) -> None:
    """With guarded reads (POLYPRAG_READ_KEY set, or --guard-reads / POLYPRAG_GUARD_READS=1) every endpoint
    but the page needs X-API-Key: the read key or the write key."""
    keys = read_keys(request.app.state.guard_reads)
    if keys and not _key_matches(request, *keys):
        raise ApiError(401, "missing or wrong X-API-Key header: this server guards reads too; send the read key "
                            f"({READ_KEY_ENV}) or the write key ({API_KEY_ENV}) it was started with.")


def read_keys(guard_reads: bool) -> list[str]:
    """The keys a read may present; empty: reads are open."""
    read, write = os.environ.get(READ_KEY_ENV), os.environ.get(API_KEY_ENV)
    guarded = bool(read) or guard_reads or os.environ.get(GUARD_READS_ENV) == "1"
    return [k for k in (read, write) if k] if guarded else []


def _key_matches(request: Request, *keys: str) -> bool:
    """X-API-Key, or `Authorization: Bearer KEY` (what OpenAI clients send)."""
    bearer = request.headers.get("authorization", "")
    given = (request.headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else "")).encode()
    return any([hmac.compare_digest(given, k.encode()) for k in keys])  # a list: every key compared, no shortcut


def create_app(kb_folder: str | Path, model: str | None = None, limits: Limits = Limits(),
               guard_reads: bool = False, watch_s: float = WATCH_S, device: str = "cpu",
               dtype: str = "float32", allowed_hosts: tuple[str, ...] = (),
               keep_versions: int = KEEP_VERSIONS, augment_url: str = "") -> FastAPI:
    """`allowed_hosts`: Host names answered besides the loopback ones ("*": any)."""
    if (guard_reads or os.environ.get(GUARD_READS_ENV) == "1") and not read_keys(True):
        raise InputError(f"guarded reads need a key: set {API_KEY_ENV} (or {READ_KEY_ENV}) before starting the "
                         "server, or drop --guard-reads.")
    service = Service(kb_folder, model, watch_s, device, dtype, limits.max_waiting, limits.max_jobs, keep_versions,
                      augment_url)
    app = FastAPI(title="polyprag", description="Parametric RAG over a living knowledge base (Poly-PRAG).",
                  docs_url=None, openapi_url=None)  # served below, behind the read key like every read
    read, write = [Depends(require_read_key)], [Depends(require_read_key), Depends(require_key)]
    app.state.service, app.state.guard_reads = service, guard_reads
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(HostAllowlist, hosts=(*LOOPBACK_HOSTS, *allowed_hosts))
    app.add_middleware(Throttle, max_refusals=limits.max_refusals, tarpit_s=limits.tarpit_s,
                       drain_bytes=DRAIN_FACTOR * limits.max_body_bytes)  # added last: runs first, and sees every refusal
    _error_handlers(app)
    page = (files("polyprag") / "web" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page  # no data in it: it asks for the key and sends it with every request

    @app.get("/health", dependencies=read)
    async def health() -> Health:
        kb = service.kb
        return Health(ok=True, n_docs=len(kb.docs), version=kb_version(kb), model=public_name(kb.lm.spec),
                      jobs_queued=service.queue.qsize())

    @app.get("/openapi.json", dependencies=read, include_in_schema=False)
    async def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", dependencies=read, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="polyprag API")

    @app.post("/v1/answer", dependencies=read)
    async def answer(req: AnswerRequest, request: Request) -> AnswerResponse:
        questions = checked_questions(req, limits)
        with service.admitted(len(questions)):  # counted before it waits for a thread: the bound holds
            kb, hits, answers, weights = await answered(request, service, questions, req.mode, req.k,
                                                        req.max_new_tokens, limits.answer_wait_s)
        by_id = {d.id: d for d in kb.docs}
        out = [AnswerOut(question=a.question, answer=a.answer, raw=a.raw,
                         documents=[_retrieved(by_id[h.doc_id], h) for h in hs],
                         mixing=None if weights is None else mixing_summary(weights[i], limits.top_adapters))
               for i, (a, hs) in enumerate(zip(answers, hits))]
        return AnswerResponse(mode=req.mode, k=req.k, version=kb_version(kb), answers=out)

    _openai_routes(app, service, limits, read)
    _document_routes(app, service, limits, read, write)
    return app


def _document_routes(app: FastAPI, service: Service, limits: Limits, read: list, write: list) -> None:
    """Add (a job), look up and remove (a job) documents."""

    @app.post("/v1/documents", status_code=202, dependencies=write)
    async def add_documents(req: DocumentsRequest) -> JobOut:
        _check(req.grow == "auto" or 0 <= req.grow <= MAX_GROW, f"grow={req.grow}: send 0 to {MAX_GROW} or 'auto'.")
        return service.submit(Job("add", checked_documents(req, service.kb, limits), grow=req.grow))

    @app.get("/v1/jobs/{job_id}", dependencies=read)
    async def job(job_id: str) -> JobOut:
        _check(job_id in service.jobs, f"no job {job_id!r}; use the job_id that POST /v1/documents returned.", 404)
        return service.jobs[job_id].out()

    @app.get("/v1/documents/{doc_id:path}", dependencies=read)
    async def document(doc_id: str) -> DocumentOut:
        kb = service.kb
        _check(doc_id in kb.row, f"no document {doc_id!r} in the knowledge base ({len(kb.docs)} documents).", 404)
        d, weights = kb.docs[kb.row[doc_id]], kb.routing.mean_weights(torch.tensor([kb.row[doc_id]]))
        return DocumentOut(id=d.id, title=d.title, text=d.text, mixing=mixing_summary(weights, limits.top_adapters))

    @app.delete("/v1/documents/{doc_id:path}", status_code=202, dependencies=write)
    async def remove_document(doc_id: str) -> JobOut:
        # A job like an addition: mutations must run in order, each on the version the previous one saved.
        _check(doc_id in service.kb.row, f"no document {doc_id!r} in the knowledge base.", 404)
        return service.submit(Job("remove", [doc_id]))


# OpenAI request fields that would change the answer and that polyprag cannot honour: refused, never ignored
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "response_format", "stop", "logprobs",
               "top_logprobs", "logit_bias", "audio", "modalities", "prediction")
OPENAI_MODELS = ("polyprag", *get_args(Mode))  # "polyprag" is poly; the others are the modes by name


def _openai_routes(app: FastAPI, service: Service, limits: Limits, read: list) -> None:
    """`POST /v1/chat/completions` and `GET /v1/models`, so that OpenAI clients and frameworks talk to the KB
    unchanged: the last user message is the question, the model name (or the extra field "mode") the mode."""

    @app.get("/v1/models", dependencies=read)
    async def models() -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "polyprag"}
                                           for m in OPENAI_MODELS]}

    @app.post("/v1/chat/completions", dependencies=read)
    async def chat(req: ChatRequest, request: Request) -> dict:
        mode = req.mode or ("poly" if req.model == "polyprag" else req.model)
        _check(mode in OPENAI_MODELS, f"model {req.model!r}: choose from {list(OPENAI_MODELS)} (GET /v1/models).")
        _check(not req.stream, "stream=true is not supported; send stream=false (answers are a few tokens).")
        _check(req.n == 1, f"n={req.n}: greedy decoding gives one answer; send n=1.")
        users = [m for m in req.messages if m.role == "user"]
        _check(bool(users), "no user message; the last user message is the question.")
        question = _text(users[-1].content)
        given = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        _check(given is None or given >= 1, f"max_tokens={given}: send at least 1 (or leave it out: 32).")
        max_new = given or 32
        unsupported = sorted(k for k, v in (req.model_extra or {}).items() if k in UNSUPPORTED and v not in (None, False, []))
        _check(not unsupported, f"{', '.join(unsupported)}: not supported by polyprag (greedy short answers, no "
                                "tools or formats); leave these fields out.")
        checked_questions(AnswerRequest(question=question, k=req.k, mode=mode, max_new_tokens=max_new), limits)
        with service.admitted(1):
            kb, hits, answers, _ = await answered(request, service, [question], mode, req.k, max_new,
                                                  limits.answer_wait_s)
            usage = await run_in_threadpool(service.locked, token_usage, kb, mode, answers[0])
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": req.model,
                "choices": [{"index": 0, "logprobs": None,
                             "finish_reason": "length" if usage["completion_tokens"] >= max_new else "stop",
                             "message": {"role": "assistant", "content": answers[0].answer}}],
                "usage": usage,
                "polyprag": {"mode": mode, "version": kb_version(kb), "raw": answers[0].raw,
                             "documents": [h.doc_id for h in hits[0]]}}


def token_usage(kb: KnowledgeBase, mode: str, answer: Answer) -> dict:
    """OpenAI's usage: the prompt as the reader built it (the passages it kept) and the tokens it generated."""
    tok = kb.lm.tokenizer
    prompt = build_prompt(tok, answer.question, answer.passages or None, shots=mode in ("rag", "closed-book"))
    generated = answer.raw[len(ANSWER_PREFIX):] if answer.raw.startswith(ANSWER_PREFIX) else answer.raw
    n_prompt = len(tok(prompt, add_special_tokens=False).input_ids)
    n_completion = len(tok(generated, add_special_tokens=False).input_ids)
    return {"prompt_tokens": n_prompt, "completion_tokens": n_completion, "total_tokens": n_prompt + n_completion}


def _text(content: str | list[ContentPart] | None) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, list):
        return " ".join(part.text or "" for part in content if part.type == "text")
    return content or ""


def _retrieved(d: Document, h: Hit) -> Retrieved:
    return Retrieved(id=d.id, title=d.title, score=round(h.score, 4), snippet=d.text[:300])


def _error_handlers(app: FastAPI) -> None:
    """Every error is JSON {"error": message} ({"error": {"message", "type", "code"}} on the OpenAI-compatible
    routes, where clients look for it); unexpected ones are logged here and stay generic for clients."""

    def reply(request: Request, status: int, message: str, headers: dict | None = None) -> JSONResponse:
        if request.url.path in ("/v1/chat/completions", "/v1/models"):
            status = 400 if status == 422 else status  # OpenAI answers a bad request with 400
            kind = "invalid_request_error" if status < 500 else "server_error"
            return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status,
                                headers=headers)
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        retry = None if e.retry_after_s is None else {"Retry-After": str(e.retry_after_s)}
        return reply(request, e.status, str(e), retry)

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError) -> JSONResponse:
        return reply(request, 400, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return reply(request, 422, _validation_message(e))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return reply(request, e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return reply(request, 500, "internal server error; the server log has the details.")


def serve(kb_folder: str | Path, host: str = "127.0.0.1", port: int = 8000, model: str | None = None,
          guard_reads: bool = False, device: str = "cpu", dtype: str = "float32",
          allowed_hosts: tuple[str, ...] = (), keep_versions: int = KEEP_VERSIONS, augment_url: str = "") -> None:
    import uvicorn

    if host_name(host) not in LOOPBACK_HOSTS:
        if not os.environ.get(API_KEY_ENV):
            log.warning("listening on %s with no %s: anyone who reaches this address can add and remove documents; "
                        "set %s (and %s to guard reads)", host, API_KEY_ENV, API_KEY_ENV, READ_KEY_ENV)
        if host not in ("0.0.0.0", "::"):
            allowed_hosts = (*allowed_hosts, host)  # the address it listens on is a name clients use
    uvicorn.run(create_app(kb_folder, model, guard_reads=guard_reads, device=device, dtype=dtype,
                           allowed_hosts=allowed_hosts, keep_versions=keep_versions, augment_url=augment_url),
                host=host, port=port,
                log_level="info")
