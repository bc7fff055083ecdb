"""Where a build's memory goes, phase by phase: the process's high-water mark (VmHWM) and RSS after each step
of `KnowledgeBase.build` (augmentation, document embeddings, the inventory, samples, optimiser) and after the
forward pass, backward and optimiser step of the first batches, then the mean seconds per batch of the next ones.

    .venv/bin/python benchmarks/build_phases.py [--batches 20] [--trim] [--docs polyprag/data/sample/docs.jsonl]

`--trim` hands freed memory back to the OS (`lm.models.release_heap`) after every phase and the first batches'
backward, to tell live memory from freed memory the heap keeps. Beside benchmarks/batch_memory.py (every batch
that raised the high-water mark). Linux only (/proc). Run it alone: the seconds are only comparable on an idle
machine. The build stops after `--batches` batches.
"""

from __future__ import annotations

import argparse
import os
import re
import time

import polyprag.kb.encode as encode
import polyprag.method.train as train
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import DEFAULT_MODEL, fix_mmap_threshold, load_model, release_heap
from polyprag.text.corpus import load_corpus

SHOWN = 4  # batches whose forward, backward and step are shown


class Stop(Exception):
    """Raised after the last batch asked for: the build goes no further."""


def mark(what: str) -> None:
    status = open("/proc/self/status", encoding="ascii").read()
    hwm, rss = (int(re.search(rf"{k}:\s+(\d+)", status).group(1)) // 1024 for k in ("VmHWM", "VmRSS"))
    print(f"| {what} | {hwm:,} | {rss:,} |", flush=True)


def phases(trim: bool) -> None:
    """Mark before-and-after of each build step (the names encode.py calls)."""
    for name in ("_augment", "_embed", "inject", "kmeans"):
        _wrap(encode, name, trim)
    for name in ("_encode_all", "_optimizer"):
        _wrap(train, name, trim)


def _wrap(module, name: str, trim: bool) -> None:
    f = getattr(module, name)

    def marked(*args, **kwargs):
        out = f(*args, **kwargs)
        mark(f"after {name.lstrip('_')}")
        if trim:
            release_heap()
            mark(f"after {name.lstrip('_')}, trimmed")
        return out

    setattr(module, name, marked)


def batches(n: int, trim: bool) -> None:
    """Mark the first batches' forward passes, backward and step; time the rest; stop after n."""
    loss, backward, done, began = train._loss, train._backward, [0], [0.0]

    def forward(model, batch, rows, config):
        out = loss(model, batch, rows, config)
        if done[0] < SHOWN:
            mark(f"batch {done[0]}: forward of a pass {tuple(batch['input_ids'].shape)}")
        return out

    def stepped(run, rows):
        if not hasattr(run.opt, "marked"):
            step = run.opt.step

            def marked_step(*args, **kwargs):
                out = step(*args, **kwargs)
                if done[0] <= SHOWN:
                    mark(f"batch {done[0] - 1}: optimiser step")
                return out
            run.opt.step, run.opt.marked = marked_step, True
        if done[0] == SHOWN:
            began[0] = time.perf_counter()
        out = backward(run, rows)
        if done[0] < SHOWN:
            mark(f"batch {done[0]}: backward")
            if trim:
                release_heap()
                mark(f"batch {done[0]}: backward, trimmed")
        done[0] += 1
        if done[0] == n:
            print(f"\nbatches {SHOWN}..{n - 1}: {(time.perf_counter() - began[0]) / (n - SHOWN):.2f} s per batch")
            raise Stop
        return out

    train._loss, train._backward = forward, stepped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="polyprag/data/sample/docs.jsonl")
    ap.add_argument("--batches", type=int, default=20, help=f"stop after this many (more than {SHOWN})")
    ap.add_argument("--trim", action="store_true", help="release_heap after every phase and shown backward")
    args = ap.parse_args()
    if args.batches <= SHOWN:
        ap.error(f"--batches {args.batches}: give more than {SHOWN} (the shown batches, then the timed ones)")
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")  # as the CLI sets it (cli.ONEDNN_CACHE)
    fix_mmap_threshold()
    print("| phase | high-water MiB | RSS MiB |\n|---|---|---|")
    docs, lm = load_corpus(args.docs), load_model(DEFAULT_MODEL)
    mark("model loaded")
    phases(args.trim)
    batches(args.batches, args.trim)
    try:
        KnowledgeBase.build(docs, lm, BuildConfig(), progress=False)
    except Stop:
        pass


if __name__ == "__main__":
    main()
