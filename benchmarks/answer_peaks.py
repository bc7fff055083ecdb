"""Each answering mode's peak memory over many questions, from a saved knowledge base in a fresh process (what
`ask` and `serve` do): the RSS once the KB is loaded, then each mode's peak over the bundled sample's 60
questions in batches (benchmarks/answer_memory.py follows one question at a time), sampled every 20 ms.

    .venv/bin/polyprag build polyprag/data/sample/docs.jsonl --out /tmp/kb30 --dtype bfloat16 --epochs 1
    .venv/bin/python benchmarks/answer_peaks.py /tmp/kb30 [--modes poly,poly-uniform,poly-combine]
        [--dtype bfloat16] [--head-copy] [--out F.json]

--head-copy takes away load_model's contiguous input to the model's head, to show what it saves (the prefill's
last position is then a (B, 1, d) view, and torch's matmul copies the head's weight per row). Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import psutil

from polyprag.cli import ONEDNN_CACHE
from polyprag.commands import SAMPLE
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.lm.models import load_model


class Peak:
    """The process's peak RSS since `reset`, sampled by a daemon thread (ru_maxrss cannot be reset)."""

    def __init__(self) -> None:
        self.proc, self.peak = psutil.Process(), 0
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> float:
        return self.proc.memory_info().rss / 2**20

    def reset(self) -> None:
        self.peak = self.rss()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kb", type=Path)
    ap.add_argument("--modes", default="poly,poly-uniform,poly-combine")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--head-copy", action="store_true", help="without the head's contiguous input")
    ap.add_argument("--out", type=Path, help="also write the rows to this JSON file")
    args = ap.parse_args()
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE))  # as the CLI runs
    memory = Peak()
    lm = load_model("smollm2-135m-instruct", dtype=args.dtype)
    if args.head_copy:
        lm.model.get_output_embeddings()._forward_pre_hooks.clear()
    kb = KnowledgeBase.load(args.kb, lm)
    questions = [json.loads(line)["question"] for line in (SAMPLE / "questions.jsonl").read_text().splitlines()]
    rows = [{"step": "loaded", "rss_mib": memory.rss()}]
    for mode in args.modes.split(","):
        memory.reset()
        start = time.perf_counter()
        kb.answer(questions, mode=mode, progress=False)
        rows.append({"step": mode, "rss_mib": memory.rss(), "peak_mib": memory.peak, "s": time.perf_counter() - start})
    print(f"{'step':<14}{'RSS MiB':>9}{'peak MiB':>10}{'s':>7}")
    for r in rows:
        print(f"{r['step']:<14}{r['rss_mib']:>9.0f}{r.get('peak_mib', r['rss_mib']):>10.0f}{r.get('s', 0):>7.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**vars(args), "kb": str(args.kb), "out": str(args.out),
                                        "questions": len(questions),
                                        "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
