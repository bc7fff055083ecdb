"""The reader: questions (and passages, or adapter mixing) → prompts → generation → short answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .extract import raw_to_answer
from .generate import GenerationConfig, Routing, generate
from .models import LoadedModel
from .prompts import build_prompt, check_questions


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
    prompts = [build_prompt(lm.tokenizer, q, ps, shots=shots) for q, ps in zip(questions, contexts)]
    generated = generate(lm, prompts, config, progress=progress, timings=timings, routing=routing)
    answers = []
    for q, ps, g in zip(questions, contexts, generated):
        short, raw, prag = raw_to_answer(lm.tokenizer, g)
        answers.append(Answer(question=q, answer=short, raw=raw, answer_prag=prag, passages=ps))
    return answers
