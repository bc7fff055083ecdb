"""The reader: questions (and passages, or adapter mixing) → prompts → generation → short answers."""

from __future__ import annotations

from dataclasses import dataclass, field

PASSAGE_TOKENS = 2048  # one passage in a prompt at most (HotpotQA's longest is 1,555): longer ones are cut
MAX_CONTEXT_TOKENS = 8192  # a prompt never exceeds this (nor the model's own context), whatever the model allows

from .extract import raw_to_answer
from .generate import GenerationConfig, Routing, generate
from .models import LoadedModel
from .prompts import build_prompt, check_questions, defuse


@dataclass
class Answer:
    question: str
    answer: str  # extracted short answer
    raw: str  # the model's full output, prefix included
    answer_prag: str = ""  # PRAG's own cruder extraction, for comparison
    passages: list[str] = field(default_factory=list)


def answer_questions(lm: LoadedModel, questions: list[str], passages: list[list[str]] | None = None,
                     config: GenerationConfig = GenerationConfig(), progress: bool = True,
                     timings: list[float] | None = None, routing: Routing | None = None,
                     shots: bool | None = None) -> list[Answer]:
    """Closed-book when `passages` is None, else each question with its own passages in the prompt.

    With `routing`, each question is answered by the base model mixed with its own adapter weights, and
    prompted without the few-shot examples, exactly as the adapters were trained (`shots` overrides:
    False for any reader carrying trained adapters, such as PRAG's).
    """
    check_questions(questions)
    contexts = passages if passages is not None else [[] for _ in questions]
    shots = routing is None if shots is None else shots
    contexts = [fit_passages(lm, q, ps, shots, config.max_new_tokens) for q, ps in zip(questions, contexts)]
    prompts = [build_prompt(lm.tokenizer, q, ps, shots=shots) for q, ps in zip(questions, contexts)]
    generated = generate(lm, prompts, config, progress=progress, timings=timings, routing=routing)
    answers = []
    for q, ps, g in zip(questions, contexts, generated):
        short, raw, prag = raw_to_answer(lm.tokenizer, g)
        answers.append(Answer(question=q, answer=short, raw=raw, answer_prag=prag, passages=ps))
    return answers


def context_tokens(lm: LoadedModel) -> int:
    """The longest prompt + answer this reader takes: the model's context, at most MAX_CONTEXT_TOKENS."""
    return min(int(getattr(lm.model.config, "max_position_embeddings", MAX_CONTEXT_TOKENS)), MAX_CONTEXT_TOKENS)


def fit_passages(lm: LoadedModel, question: str, passages: list[str], shots: bool, max_new_tokens: int) -> list[str]:
    """The passages cut to what the prompt can hold, in tokens: each to PASSAGE_TOKENS, then the last ones
    shortened (or left out) until the prompt plus `max_new_tokens` fits the context. Bounds one request's
    compute and memory whatever a corpus holds; passages that already fit come back unchanged."""
    if not passages:
        return passages
    tok = lm.tokenizer
    cut = [_head(tok, defuse(tok, p), PASSAGE_TOKENS) for p in passages]  # measured as the prompt will hold it
    room = context_tokens(lm) - max_new_tokens - _length(tok, build_prompt(tok, question, [""] * len(cut), shots))
    out = []
    for p in cut:
        n = _length(tok, p)
        if room <= 0:
            break
        out.append(p if n <= room else _head(tok, p, room))
        room -= min(n, room) + 1  # +1: the separator a passage brings can merge into a token of its own
    return out


def _length(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def _head(tokenizer, text: str, n: int) -> str:
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return text if len(ids) <= n else tokenizer.decode(ids[:n])
