"""The answering modes as data: the one place a mode is named and described.

Each mode says what it needs (the base model, a knowledge base, PRAG's adapters, DyPRAG's translator), whether
the retrieved passages go into the prompt, and how a knowledge base mixes its adapters for it. `readers` turns
a mode into an object that answers; the knowledge base, the CLI, the service and its web page, `eval` and the
load test read the names and properties from here. `eval.bench` adds its own variants (PRAG's recipes, the
shuffled controls, growth) on top.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    needs: str  # "model" (the base model), "kb" (a knowledge base), "lora" (PRAG's per-document LoRAs), "translator"
    passages: bool  # the hits' passages go into the prompt
    about: str
    served: bool = False  # `ask`, the HTTP service and the demo offer it (a KB and its base model are enough)
    shots: bool = False  # the reader's example exchanges before the question (the adapters were trained without)
    retrieves: bool = True  # False: the question alone, nothing retrieved
    uniform: bool = False  # a KB mode that weights every adapter alike, whatever was retrieved
    strength: bool = False  # a KB mode whose mixture the KB's combine strength scales (passages beside adapters)
    gold: bool = False  # the question's gold paragraphs instead of the retrieved ones


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("closed-book", "model", False, "the question alone, after the reader's example exchanges", served=True,
         shots=True, retrieves=False),
    Mode("closed-book-bare", "model", False, "asked as the parametric modes ask (no examples), no adapter",
         retrieves=False),
    Mode("rag", "model", True, "the top-k passages in the prompt", served=True, shots=True),
    Mode("rag-bare", "model", True, "the top-k passages asked as the parametric modes ask (no examples), no adapter: "
         "poly-combine's and prag-combine's prompt without their adapters"),
    Mode("rag-gold", "model", True, "the question's gold paragraphs in the prompt: the reader's upper bound",
         shots=True, gold=True),
    Mode("poly", "kb", False, "the adapters mixed by the mean of the retrieved documents' routing weights",
         served=True),
    Mode("poly-combine", "kb", True, "poly, with the passages in the prompt too", served=True, strength=True),
    Mode("poly-uniform", "kb", False, "every adapter weighted alike: what routing adds is poly minus this",
         served=True, uniform=True),
    Mode("poly-uniform-combine", "kb", True, "poly-uniform, with the passages in the prompt too: what any adapter "
         "adds beside the passages", uniform=True, strength=True),
    Mode("prag", "lora", False, "the sum of the retrieved documents' own LoRAs (PRAG)"),
    Mode("prag-combine", "lora", True, "prag, with the passages in the prompt too"),
    Mode("dyprag", "translator", False, "the sum of LoRAs a trained translator makes from the retrieved documents (DyPRAG)"),
    Mode("dyprag-combine", "translator", True, "dyprag, with the passages in the prompt too"),
)}
# the modes a knowledge base answers in: `ask`, the service (GET /v1/modes, the web page), the demo, the load test
SERVED = tuple(name for name, m in MODES.items() if m.served)
KB_MODES = tuple(name for name, m in MODES.items() if m.needs == "kb")
KB_DEFAULT = "poly"  # `ask --kb` and the service without a mode
MODEL_DEFAULT = "rag"  # `ask` without a KB
EVAL_DEFAULT = ("closed-book", "rag")  # `polyprag eval` without --modes


def needs(method: str) -> str:
    """What a mode, or a bench method that varies one, needs ("prag-shared-combine" -> "lora", "poly-z" -> "kb"):
    that of the longest mode name the method is or starts with (then "-"), or "" when none fits."""
    names = [n for n in MODES if method == n or method.startswith(n + "-")]
    return MODES[max(names, key=len)].needs if names else ""
