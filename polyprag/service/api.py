"""The HTTP API's shapes and the checks at its edge: request and response models, the service's limits, and
the validation that answers a bad request with a status and a message naming the value and the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict

from ..text.corpus import Document, validate_id
from ..errors import InputError
from ..kb.knowledge import KnowledgeBase
from ..lm.generate import GenerationConfig
from ..modes import KB_DEFAULT, SERVED
from ..text.retrieve import TOP_K

Mode = Literal[SERVED]  # the served modes of the registry (modes.MODES)
MAX_GROW = 64  # adapters one request may add


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
    k: int = TOP_K
    mode: Mode = KB_DEFAULT
    max_new_tokens: int = GenerationConfig().max_new_tokens


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
    k: int = TOP_K


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


class ModeOut(BaseModel):
    name: str
    about: str
    passages: bool  # the retrieved passages go into the prompt


class Health(BaseModel):
    ok: bool
    n_docs: int
    version: int
    model: str
    jobs_queued: int


def mixing_summary(weights: torch.Tensor, top: int) -> Mixing:
    """weights (G, M), each row summing to 1 → the top adapters by mean weight, and the mean row entropy."""
    mean = weights.mean(0)  # (M,)
    order = torch.argsort(mean, descending=True)[:top]
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean()
    return Mixing(top=[AdapterWeight(adapter=int(i), weight=round(float(mean[i]), 5)) for i in order],
                  entropy=round(float(entropy), 5), max_entropy=round(math.log(weights.shape[1]), 5))


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status, self.retry_after_s = status, retry_after_s


def check(ok: bool, message: str, status: int = 422) -> None:
    if not ok:
        raise ApiError(status, message)


def checked_questions(req: AnswerRequest, limits: Limits) -> list[str]:
    check((req.question is None) != (req.questions is None),
           'give either "question": "..." or "questions": ["...", ...], not both or neither.')
    questions = [req.question] if req.question is not None else req.questions
    check(0 < len(questions) <= limits.max_questions,
           f"{len(questions)} questions; send 1 to {limits.max_questions} per request.")
    for i, q in enumerate(questions):
        check(bool(q.strip()), f"question {i} is empty; write a question.")
        check(len(q) <= limits.max_question_chars,
               f"question {i} has {len(q)} characters; shorten it to at most {limits.max_question_chars}.")
    check(1 <= req.k <= limits.max_k, f"k={req.k} is out of range; use 1 to {limits.max_k}.")
    check(1 <= req.max_new_tokens <= limits.max_new_tokens,
           f"max_new_tokens={req.max_new_tokens} is out of range; use 1 to {limits.max_new_tokens}.")
    n = len(questions)
    check(n * req.k <= limits.max_passages, f"{n} questions × k={req.k} = {n * req.k} passages to read; the "
                                             f"budget is {limits.max_passages} per request: send fewer questions "
                                             "per request or a smaller k.", 413)
    check(n * req.max_new_tokens <= limits.max_generated_tokens,
           f"{n} questions × max_new_tokens={req.max_new_tokens} = {n * req.max_new_tokens} tokens to generate; the "
           f"budget is {limits.max_generated_tokens} per request: send fewer questions or fewer new tokens.", 413)
    return questions


def checked_documents(req: DocumentsRequest, kb: KnowledgeBase, limits: Limits) -> list[Document]:
    docs = req.documents
    check(0 < len(docs) <= limits.max_documents,
           f"{len(docs)} documents; send 1 to {limits.max_documents} per request.")
    seen: set[str] = set()
    for i, d in enumerate(docs):
        check(bool(d.id.strip()) and d.id == d.id.strip(),
               f"documents[{i}].id={d.id[:80]!r}: give a non-empty id without surrounding spaces.")
        try:
            validate_id(d.id, f"documents[{i}]")  # the rule the command line applies to a corpus file
        except InputError as e:
            raise ApiError(422, str(e)) from None
        check(d.id not in seen, f"documents[{i}].id={d.id!r} appears twice in this request; make ids unique.")
        check(bool(d.text.strip()), f"documents[{i}] ({d.id!r}) has no text; add text.")
        check(len(d.text) <= limits.max_doc_chars, f"documents[{i}] ({d.id!r}) has {len(d.text)} characters of "
               f"text; split it into documents of at most {limits.max_doc_chars}.")
        check(d.id not in kb.row, f"document {d.id!r} is already in the knowledge base; DELETE "
               f"/v1/documents/{d.id} first, or give it another id.", status=400)
        seen.add(d.id)
    return [Document(d.id, d.title.strip(), d.text.strip()) for d in docs]


def validation_message(e: RequestValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err["loc"] if x != "body") or "body"
        got = repr(err.get("input"))
        parts.append(f"{where}: {err['msg']} (got {got[:80] + '…' if len(got) > 80 else got})")
    return "; ".join(parts) + ". See /docs for the request schema."
