"""Memory of answering after a build in the same process (what `polyprag demo` and `bench` do): the RSS after
the build and the peak once a batch of passage-long prompts is answered.

    .venv/bin/python benchmarks/build_then_answer.py [--docs 20] [--dtype bfloat16] [--batch-size 8]
        [--batch-tokens 4096] [--out F.json]

Builds the first N bundled sample documents at the build's defaults, then answers 16 prompts of three sample
documents each (~480 tokens: a stand-in for rag's prompt, its passages without the few-shot examples) in
batches of --batch-size rows and --batch-tokens tokens. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import psutil

from polyprag.cli import ONEDNN_CACHE
from polyprag.commands import SAMPLE
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.generate import GenerationConfig, generate
from polyprag.lm.models import load_model
from polyprag.text.corpus import load_corpus


def mib() -> tuple[float, float]:
    """(RSS now, peak RSS so far) in MiB (ru_maxrss is KiB on Linux)."""
    return psutil.Process().memory_info().rss / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--batch-size", type=int, default=GenerationConfig().batch_size,
                    help="prompts per generation batch")
    ap.add_argument("--batch-tokens", type=int, default=GenerationConfig().batch_tokens,
                    help="prompt tokens per generation batch at most (a large value: no budget)")
    ap.add_argument("--out", type=Path, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE))  # as the CLI runs
    lm = load_model("smollm2-135m-instruct", dtype=args.dtype)
    docs = load_corpus(SAMPLE / "docs.jsonl")
    KnowledgeBase.build(docs[:args.docs], lm, BuildConfig(), progress=False)
    built = mib()
    print("after the build: RSS %.0f MiB, peak %.0f MiB" % built)
    texts = [d.text for d in docs]
    prompts = [lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "\n\n".join(texts[i:i + 3]) + "\n\nQuestion: who built it?"}],
        tokenize=False, add_generation_prompt=True) for i in range(16)]
    start = time.perf_counter()
    generate(lm, prompts, GenerationConfig(batch_size=args.batch_size, batch_tokens=args.batch_tokens), progress=False)
    seconds, answered = time.perf_counter() - start, mib()
    print("after answering: RSS %.0f MiB, peak %.0f MiB" % answered, "in %.1f s" % seconds)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**vars(args), "out": str(args.out), "built_rss_mib": built[0],
                                        "built_peak_mib": built[1], "answered_rss_mib": answered[0],
                                        "answered_peak_mib": answered[1], "answer_s": seconds}, indent=1) + "\n")


if __name__ == "__main__":
    main()
