"""Batched answering with a different mixture per question against none: wall times and torch.profiler's top ops.

    .venv/bin/python benchmarks/profile_batch.py /tmp/kb

The first 32 sample questions in one batch, answered as `closed-book-bare` (no adapters) and as `poly` (each
question its own mixture of the KB's adapters), timed as `bench-speed` times them, then one profiled batch of each.
"""

from __future__ import annotations

import argparse
import json

from torch.profiler import ProfilerActivity, profile

from polyprag.lm.generate import GenerationConfig
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.readers import reader
from polyprag.eval.speed import SpeedConfig, _batched

SAMPLE_QUESTIONS = "polyprag/data/sample/questions.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kb", help="a knowledge base folder")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    kb = KnowledgeBase.load(args.kb, dtype="float32")  # what its recorded results ran in
    with open(SAMPLE_QUESTIONS, encoding="utf-8") as f:
        questions = [json.loads(line)["question"] for line in f][:args.batch]
    timed = _batched(kb, questions, SpeedConfig(model=kb.lm.spec, batch=len(questions), max_new_tokens=16))  # as bench-speed times it
    print(f"q/s, median of {timed['repeats']}: poly {timed['poly_q_per_s']:.2f}, closed-book-bare "
          f"{timed['closed_book_q_per_s']:.2f}", flush=True)
    hits = kb.retrieve(questions, 3)
    generation = GenerationConfig(max_new_tokens=16, batch_size=len(questions))
    readers = {"closed-book-bare": reader("closed-book-bare", kb.lm, kb.docs), "poly": reader("poly", kb=kb)}
    for name, r in readers.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            r.answer(questions, hits, generation, progress=False)
        print(f"\n{name}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
