"""Where answering's memory goes: RSS after each step of loading a knowledge base and answering with it.

    .venv/bin/python benchmarks/answer_memory.py /tmp/kb

The steps `polyprag serve` takes before and while it answers (imports, base model, knowledge base, the first
questions in poly and poly-combine), each with the process's RSS then and its peak so far.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import psutil

QUESTIONS = ("Who built the Marlow Bridge?", "Where is Velmark?", "When was it founded?")


def show(step: str) -> None:
    rss = psutil.Process().memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(f"| {step} | {rss / 2**20:,.0f} MiB | {peak / 2**20:,.0f} MiB |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kb", help="a knowledge base folder")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    print("| step | RSS | peak RSS |\n|---|---|---|")
    show("python started")
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from polyprag.kb.knowledge import KnowledgeBase
    from polyprag.lm.models import load_model
    from polyprag.kb.lifecycle import read_manifest
    show("torch, transformers and polyprag imported")
    lm = load_model(read_manifest(Path(args.kb))["base_model"]["spec"], dtype=args.dtype)
    show("base model loaded (weights mapped from disk, not yet read)")
    kb = KnowledgeBase.load(args.kb, lm=lm)
    show("knowledge base loaded")
    for i, q in enumerate(QUESTIONS):
        kb.answer([q], progress=False)
        show(f"poly question {i + 1} answered")
    kb.answer([QUESTIONS[0]], mode="poly-combine", progress=False)
    show("poly-combine question answered (3 passages in the prompt)")


if __name__ == "__main__":
    main()
