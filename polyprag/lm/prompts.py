"""Prompts: PRAG's templates and a short-answer recipe, the same for training and answering.

Small models answer verbosely. What works at 135M–270M (measured, see docs/method.md): chat models get the chat
template, one invented example exchange, and an assistant turn that already starts "The answer is";
base models get plain text after a leading bos, one example block, and end at "\nAnswer:".
Parametric prompts (the adapters are trained on them) carry no examples and a shorter system turn.
"""

from __future__ import annotations

from ..errors import InputError

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


def defuse(tokenizer, text: str) -> str:
    """`text` with every special token string ("<|im_start|>", "<start_of_turn>") broken by a zero-width space,
    so a question or document cannot open a turn of its own: only the template's markers are special."""
    specials = [t for t in _special_strings(tokenizer) if t in text]
    for t in specials:
        text = text.replace(t, t[0] + "\u200b" + t[1:])
    return text


def _special_strings(tokenizer) -> list[str]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    found = {*getattr(tokenizer, "all_special_tokens", []), *(t.content for t in added.values() if t.special)}
    return sorted((t for t in found if len(t) > 1), key=len, reverse=True)


def build_prompt(tokenizer, question: str, passages: list[str] | None = None, shots: bool = True) -> str:
    """The reader's prompt, ending where the answer starts. Parametric modes train and ask without shots."""
    question = defuse(tokenizer, question)
    passages = [defuse(tokenizer, p) for p in passages] if passages else passages
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


def check_questions(questions: list[str], limit: int = MAX_QUESTION_CHARS) -> None:
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"question {i} is {q!r}: empty; write a question.")
        if len(q) > limit:
            raise InputError(f"question {i} has {len(q):,} characters, over {limit:,}; ask a shorter question "
                             "(put long material into the corpus instead).")
