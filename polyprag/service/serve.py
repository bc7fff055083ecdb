"""The HTTP service and its web page over one knowledge base: routes, keys, errors (the state it serves:
`service`; the shapes and checks of its API: `api`; its outer walls: `guards`)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import uuid
from importlib.resources import files
from pathlib import Path
from typing import get_args

import torch
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from ..lm.answer import Answer
from .api import (MAX_GROW, AnswerOut, AnswerRequest, AnswerResponse, ApiError, ChatRequest, ContentPart,
                  DocumentOut, DocumentsRequest, Health, JobOut, Limits, Mode, ModeOut, Retrieved, check, validation_message,
                  checked_documents, checked_questions, mixing_summary)
from ..text.corpus import Document
from ..errors import InputError
from .guards import DRAIN_FACTOR, LOOPBACK_HOSTS, BodyLimit, HostAllowlist, Throttle, host_name
from ..kb.knowledge import KnowledgeBase
from ..kb.lifecycle import KEEP_VERSIONS
from ..lm.models import SERVE_DTYPE
from ..lm.prompts import ANSWER_PREFIX, build_prompt
from ..modes import KB_DEFAULT, MODES, SERVED
from ..text.retrieve import Hit
from .state import WATCH_S, Answered, Job, Service, kb_version, public_name

log = logging.getLogger("polyprag")

API_KEY_ENV = "POLYPRAG_API_KEY"  # the write key: adding and removing documents need it
READ_KEY_ENV = "POLYPRAG_READ_KEY"  # set: every endpoint but the page needs this key or the write key
GUARD_READS_ENV = "POLYPRAG_GUARD_READS"  # "1": every endpoint but the page needs the write key (= --guard-reads)
DISCONNECT_POLL_S = 0.5  # how often a request waiting for the model checks that its client is still there


# ---------------------------------------------------------------- the app

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
               dtype: str = SERVE_DTYPE, allowed_hosts: tuple[str, ...] = (),
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
    _info_routes(app, service, read)

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


def _info_routes(app: FastAPI, service: Service, read: list) -> None:
    """The page, health, the modes and the API's own docs."""
    page = (files("polyprag") / "web" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page  # no data in it: it asks for the key and sends it with every request

    @app.get("/health", dependencies=read)
    async def health() -> Health:
        kb = service.kb
        return Health(ok=True, n_docs=len(kb.docs), version=kb_version(kb), model=public_name(kb.lm.spec),
                      jobs_queued=service.queue.qsize())

    @app.get("/v1/modes", dependencies=read)
    async def modes() -> list[ModeOut]:
        """The modes this server answers in (the registry, modes.MODES), the default first."""
        served = sorted(SERVED, key=lambda name: name != KB_DEFAULT)
        return [ModeOut(name=n, about=MODES[n].about, passages=MODES[n].passages) for n in served]

    @app.get("/openapi.json", dependencies=read, include_in_schema=False)
    async def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", dependencies=read, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="polyprag API")


def _document_routes(app: FastAPI, service: Service, limits: Limits, read: list, write: list) -> None:
    """Add (a job), look up and remove (a job) documents."""

    @app.post("/v1/documents", status_code=202, dependencies=write)
    async def add_documents(req: DocumentsRequest) -> JobOut:
        check(req.grow == "auto" or 0 <= req.grow <= MAX_GROW, f"grow={req.grow}: send 0 to {MAX_GROW} or 'auto'.")
        return service.submit(Job("add", checked_documents(req, service.kb, limits), grow=req.grow))

    @app.get("/v1/jobs/{job_id}", dependencies=read)
    async def job(job_id: str) -> JobOut:
        check(job_id in service.jobs, f"no job {job_id!r}; use the job_id that POST /v1/documents returned.", 404)
        return service.jobs[job_id].out()

    @app.get("/v1/documents/{doc_id:path}", dependencies=read)
    async def document(doc_id: str) -> DocumentOut:
        kb = service.kb
        check(doc_id in kb.row, f"no document {doc_id!r} in the knowledge base ({len(kb.docs)} documents).", 404)
        d, weights = kb.docs[kb.row[doc_id]], kb.routing.mean_weights(torch.tensor([kb.row[doc_id]]))
        return DocumentOut(id=d.id, title=d.title, text=d.text, mixing=mixing_summary(weights, limits.top_adapters))

    @app.delete("/v1/documents/{doc_id:path}", status_code=202, dependencies=write)
    async def remove_document(doc_id: str) -> JobOut:
        # A job like an addition: mutations must run in order, each on the version the previous one saved.
        check(doc_id in service.kb.row, f"no document {doc_id!r} in the knowledge base.", 404)
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
        mode = req.mode or (KB_DEFAULT if req.model == "polyprag" else req.model)
        check(mode in OPENAI_MODELS, f"model {req.model!r}: choose from {list(OPENAI_MODELS)} (GET /v1/models).")
        check(not req.stream, "stream=true is not supported; send stream=false (answers are a few tokens).")
        check(req.n == 1, f"n={req.n}: greedy decoding gives one answer; send n=1.")
        users = [m for m in req.messages if m.role == "user"]
        check(bool(users), "no user message; the last user message is the question.")
        question = _text(users[-1].content)
        given = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        check(given is None or given >= 1, f"max_tokens={given}: send at least 1 (or leave it out: 32).")
        max_new = given or 32
        unsupported = sorted(k for k, v in (req.model_extra or {}).items() if k in UNSUPPORTED and v not in (None, False, []))
        check(not unsupported, f"{', '.join(unsupported)}: not supported by polyprag (greedy short answers, no "
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
    prompt = build_prompt(tok, answer.question, answer.passages or None, shots=MODES[mode].shots)
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
        return reply(request, 422, validation_message(e))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return reply(request, e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return reply(request, 500, "internal server error; the server log has the details.")


def serve(kb_folder: str | Path, host: str = "127.0.0.1", port: int = 8000, model: str | None = None,
          guard_reads: bool = False, device: str = "cpu", dtype: str = SERVE_DTYPE,
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
