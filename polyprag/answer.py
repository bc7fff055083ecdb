"""Prompts (PRAG's templates + a short-answer recipe), batched greedy generation, answer extraction.

Small models answer verbosely. What works at 135M–270M (measured, see README): chat models get the chat
template, one invented example exchange, and an assistant turn that already starts "The answer is";
base models get plain text after a leading bos, one example block, and end at "\nAnswer:".
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .adapters import PolyLoRALinear, mixing
from .errors import InputError
from .metrics import extract_answer, extract_answer_prag
from .models import LoadedModel

log = logging.getLogger("polyprag")

# PRAG's user prompt (src/prompt_template.py): passages as "Passage i: ..." lines, then the question.
RAG_INSTRUCTION = ("You should answer the question by referring to the knowledge provided below "
                   "and integrating your own knowledge.\n")
SYSTEM = "You answer questions with a short phrase: a name, a date, a number, or yes/no."
# Parametric prompts (adapters trained on them) keep the system turn short: it is in every training sample.
PARAMETRIC_SYSTEM = "Answer briefly."
ANSWER_PREFIX = "The answer is"
MAX_QUESTION_CHARS = 10_000
# Invented exchanges (no model knows them) that show the wanted form of an answer: a name, and yes/no.
EXAMPLES = (
    ("Marlow Bridge is a stone arch bridge over the river Tesk, finished in 1862 by the engineer Ada Feld.",
     "Who built the Marlow Bridge?", "Ada Feld"),
    ("Orrin Pell (born 1901) was a Velmarkish painter. Ada Feld (born 1833) was a Velmarkish engineer.",
     "Were Orrin Pell and Ada Feld both painters?", "no"),
)


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 32
    batch_size: int = 8


@dataclass(frozen=True)
class Routing:
    """Per-question mixing weights for the adapter inventory: weights (Q, G, M) over `layers`."""

    layers: list[PolyLoRALinear]
    weights: torch.Tensor


@dataclass
class Answer:
    question: str
    answer: str  # extracted short answer
    raw: str  # the model's full output, prefix included
    answer_prag: str = ""  # PRAG's own cruder extraction, for comparison
    passages: list[str] = field(default_factory=list)


def _question(q: str) -> str:
    """PRAG's normalisation: exactly one trailing '?'."""
    q = q.strip()
    return q[:-1].strip() + "?" if q.endswith("?") else q + "?"


def user_content(question: str, passages: list[str] | None) -> str:
    if not passages:
        return f"Question: {_question(question)}"
    ctx = "".join(f"Passage {i + 1}: {p}\n" for i, p in enumerate(passages))
    return f"{RAG_INSTRUCTION}{ctx}\n\nQuestion: {_question(question)}"


def is_chat(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(tokenizer, question: str, passages: list[str] | None = None, shots: bool = True) -> str:
    """The reader's prompt, ending where the answer starts. Parametric modes train and ask without shots."""
    examples = [(user_content(q, [p] if passages else None), a) for p, q, a in EXAMPLES] if shots else []
    if is_chat(tokenizer):
        messages = [{"role": "system", "content": SYSTEM if shots else PARAMETRIC_SYSTEM}]
        for user, answer in examples:
            messages += [{"role": "user", "content": user},
                         {"role": "assistant", "content": f"{ANSWER_PREFIX} {answer}."}]
        messages.append({"role": "user", "content": user_content(question, passages)})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + ANSWER_PREFIX
    shown = "".join(f"{user}\nAnswer: {answer}\n\n" for user, answer in examples)
    return f"{tokenizer.bos_token or ''}{shown}{user_content(question, passages)}\nAnswer:"


def prompt_prefix(tokenizer) -> str:
    """The part every parametric prompt starts with (system turn or bos): training leaves it out of the loss."""
    if is_chat(tokenizer):
        return tokenizer.apply_chat_template([{"role": "system", "content": PARAMETRIC_SYSTEM}], tokenize=False)
    return tokenizer.bos_token or ""


def answer_completion(tokenizer, answer: str) -> str:
    """What a trained reader should write after `build_prompt`: the answer, then end of turn."""
    if is_chat(tokenizer):
        return f" {answer.strip().rstrip('.')}.{tokenizer.eos_token}"
    return f" {answer.strip()}\n"


def raw_to_answer(tokenizer, generated: str) -> tuple[str, str, str]:
    """(short answer, raw text with prefix, PRAG extraction) from the newly generated text.

    PRAG's own rule (no chain of thought) cuts the generation at its first ".", "," or newline.
    """
    raw = f"{ANSWER_PREFIX}{generated}" if is_chat(tokenizer) else generated.strip()
    return extract_answer(raw), raw, extract_answer_prag(generated, with_cot=False)


@torch.inference_mode()
def generate(lm: LoadedModel, prompts: list[str], config: GenerationConfig = GenerationConfig(),
             progress: bool = True, timings: list[float] | None = None, routing: Routing | None = None) -> list[str]:
    """Greedy, batched (left padding), longest prompts first; returns only the new text of each prompt.

    `timings`, when given, receives each prompt's share of its batch's wall time (amortised latency).
    """
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    shares: list[float] = [0.0] * len(prompts)
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    for batch in tqdm(batches, desc="generating", unit="batch", disable=not progress or len(batches) < 2):
        start = time.perf_counter()
        route = mixing(routing.layers, routing.weights[batch]) if routing else nullcontext()
        with route:
            texts = _generate_batch(lm, [prompts[i] for i in batch], config)
        share = (time.perf_counter() - start) / len(batch)
        for i, text in zip(batch, texts):
            out[i], shares[i] = text, share
    if timings is not None:
        timings.extend(shares)
    return out


def _generate_batch(lm: LoadedModel, prompts: list[str], config: GenerationConfig) -> list[str]:
    tok, model = lm.tokenizer, lm.model
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left",
              add_special_tokens=False).to(model.device)
    # Base models have no end-of-turn token: stop each row at its first newline instead.
    stop = {} if is_chat(tok) else {"stop_strings": ["\n"], "tokenizer": tok}
    ids = model.generate(**enc, max_new_tokens=config.max_new_tokens, do_sample=False, top_p=None, top_k=None,
                         temperature=None, pad_token_id=tok.pad_token_id, **stop)  # (B, T + new)
    new = ids[:, enc["input_ids"].shape[1]:]
    return [t.split("\n\n")[0] if is_chat(tok) else t.split("\n")[0]
            for t in tok.batch_decode(new, skip_special_tokens=True)]


def check_questions(questions: list[str], limit: int = MAX_QUESTION_CHARS) -> None:
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"question {i} is {q!r}: empty; write a question.")
        if len(q) > limit:
            raise InputError(f"question {i} has {len(q):,} characters, over {limit:,}; ask a shorter question "
                             "(put long material into the corpus instead).")


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
    prompts = [build_prompt(lm.tokenizer, q, ps, shots=shots) for q, ps in zip(questions, contexts)]
    generated = generate(lm, prompts, config, progress=progress, timings=timings, routing=routing)
    answers = []
    for q, ps, g in zip(questions, contexts, generated):
        short, raw, prag = raw_to_answer(lm.tokenizer, g)
        answers.append(Answer(question=q, answer=short, raw=raw, answer_prag=prag, passages=ps))
    return answers
