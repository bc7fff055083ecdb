"""A build's time and peak memory with its training batches' widths rounded up to a multiple of 16 tokens, or not
(`method/train.WIDTH_MULTIPLE`, which `width_multiple` applies to 16-bit models only).

    .venv/bin/python benchmarks/width_multiple.py --dtype float32 --multiple 16 [--docs 20] [--out F.json]

Builds the first N bundled sample documents at the build's defaults in one process, with the oneDNN cache the
CLI sets; prints and writes the build's seconds and the process's peak RSS. Run it alone, one variant per process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import polyprag.method.train as train
from polyprag.cli import ONEDNN_CACHE
from polyprag.commands import SAMPLE
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.text.corpus import load_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--multiple", type=int, required=True, help="round batch widths up to this (1: no rounding)")
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--out", type=Path, help="also write the row to this JSON file")
    args = ap.parse_args()
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE))  # as the CLI runs
    train.width_multiple = lambda model: args.multiple  # the variant, whatever the dtype
    lm = load_model("smollm2-135m-instruct", dtype=args.dtype)
    docs = load_corpus(SAMPLE / "docs.jsonl")[:args.docs]
    start = time.perf_counter()
    KnowledgeBase.build(docs, lm, BuildConfig(), progress=False)
    row = {"dtype": args.dtype, "multiple": args.multiple, "docs": args.docs, "build_s": time.perf_counter() - start,
           "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    print(f"{row['dtype']} multiple {row['multiple']}: build {row['build_s']:.1f} s, peak {row['peak_mib']:.0f} MiB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
