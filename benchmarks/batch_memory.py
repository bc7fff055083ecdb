"""Where a build's memory grows, batch by batch: the process's high-water mark (VmHWM) and RSS after each
training batch, beside the batch's widest row, printed for every batch that raised the high-water mark and every 25th.

    .venv/bin/python benchmarks/batch_memory.py [--context-qa 0] [--trim-every N] [--docs polyprag/data/sample/docs.jsonl]

Beside benchmarks/rss_timeline.py (a whole command's RSS every 50 ms) this names the batches: whether the peak
comes with the passage rows (`--context-qa`) or grows between batches whatever they hold. `--trim-every N` hands
freed memory back to the OS (`lm.models.release_heap`) after every N-th batch, to see how much of the growth is
freed memory kept in the heap. Linux only (/proc). Run it alone: the seconds are only comparable on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import re
import time

import polyprag.method.train as train
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import DEFAULT_MODEL, fix_mmap_threshold, load_model, release_heap
from polyprag.text.corpus import load_corpus


def memory_mib() -> tuple[int, int, int, int]:
    """(high-water mark, resident, resident anonymous, resident file-backed) of this process, MiB: the base
    model's weights are memory-mapped from their file, so their pages count as file-backed once touched."""
    status = open("/proc/self/status", encoding="ascii").read()
    return tuple(int(re.search(rf"{k}:\s+(\d+)", status).group(1)) // 1024
                 for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="polyprag/data/sample/docs.jsonl")
    ap.add_argument("--context-qa", type=int, default=BuildConfig().context_qa)
    ap.add_argument("--trim-every", type=int, default=0, help="release_heap after every N-th batch (0: never)")
    args = ap.parse_args()
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")  # as the CLI sets it (cli.ONEDNN_CACHE)
    fix_mmap_threshold()
    backward, log = train._backward, []

    def measured(run, rows):
        before = memory_mib()
        loss = backward(run, rows)
        if args.trim_every and (len(log) + 1) % args.trim_every == 0:
            release_heap()
        log.append((max(len(e.ids) for e in rows), len(rows), before, memory_mib()))
        return loss

    train._backward = measured
    docs, lm = load_corpus(args.docs), load_model(DEFAULT_MODEL)
    print(f"model loaded: high-water {memory_mib()[0]} MiB")
    start = time.perf_counter()
    KnowledgeBase.build(docs, lm, BuildConfig(context_qa=args.context_qa), progress=False)
    print("| batch | widest row | rows | high-water before → after MiB | RSS after | anonymous | file-backed |\n"
          "|---|---|---|---|---|---|---|")
    for i, (width, n, before, after) in enumerate(log):
        if after[0] > before[0] or i % 25 == 0:  # every rise, and every 25th batch to see the resident memory
            print(f"| {i} | {width} | {n} | {before[0]} → {after[0]} | {after[1]} | {after[2]} | {after[3]} |")
    print(f"{len(log)} batches; high-water {memory_mib()[0]} MiB; build {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
