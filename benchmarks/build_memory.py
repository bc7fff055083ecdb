"""A build's peak RSS and wall time under the settings that decide its memory: the dtype, oneDNN's primitive
cache (polyprag keeps 16; oneDNN's own default is 1,024) and recomputed activations.

    .venv/bin/python benchmarks/build_memory.py --docs 20 --out benchmarks/results/build-memory

Each variant is a fresh `polyprag build` of the first N bundled sample documents at the build's defaults
otherwise, its peak RSS taken by a one-child wrapper (as `polyprag bench-speed` does). Run it alone: the wall
times are only comparable on an idle machine. Writes build-memory.json and build-memory.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from polyprag.eval.speed import child_peak

VARIANTS = {  # name: (build flags, environment)
    "float32": (["--dtype", "float32"], {}),  # the default until 2026-12-04; `auto` (bf16 here) since
    "bfloat16": (["--dtype", "bfloat16"], {}),  # since 2026-12-04 (night) with the CLI's mmap threshold of 4 MiB
    "bfloat16 with glibc's own threshold": (["--dtype", "bfloat16"], {"POLYPRAG_MMAP_THRESHOLD": "glibc"}),
    "bfloat16 with oneDNN's own cache (1024)": (["--dtype", "bfloat16"], {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"}),
    "bfloat16 with a cache of 64": (["--dtype", "bfloat16"], {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}),
    "bfloat16 with --checkpoint-activations": (["--dtype", "bfloat16", "--checkpoint-activations"], {}),
    "bfloat16 with --pass-tokens 256": (["--dtype", "bfloat16", "--pass-tokens", "256"], {}),  # smaller saved passes
    # glibc's allocator: one arena for every thread (torch's intra-op threads otherwise free into arenas of their
    # own), and large blocks always mapped apart (the dynamic threshold otherwise keeps freed activations in the heap)
    "bfloat16 with MALLOC_ARENA_MAX=1": (["--dtype", "bfloat16"], {"MALLOC_ARENA_MAX": "1"}),
    "bfloat16 with MALLOC_MMAP_THRESHOLD_=65536": (["--dtype", "bfloat16"], {"MALLOC_MMAP_THRESHOLD_": "65536"}),
    "bfloat16 with MALLOC_MMAP_THRESHOLD_=1048576": (["--dtype", "bfloat16"], {"MALLOC_MMAP_THRESHOLD_": "1048576"}),
    "bfloat16 with MALLOC_MMAP_THRESHOLD_=4194304": (["--dtype", "bfloat16"], {"MALLOC_MMAP_THRESHOLD_": "4194304"}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20, help="first N sample documents")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from VARIANTS")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cli = [sys.executable, "-m", "polyprag.cli", "-q"]
    subprocess.run([*cli, "export", "--dataset", "sample", "--out", str(tmp / "sample")], check=True)
    lines = (tmp / "sample" / "docs.jsonl").read_text().splitlines()[:args.docs]
    (tmp / "docs.jsonl").write_text("\n".join(lines) + "\n")
    rows = []
    for name in args.variants.split(","):
        flags, env = VARIANTS[name]
        start = time.perf_counter()
        peak = child_peak([*cli, "build", str(tmp / "docs.jsonl"), "--out", str(tmp / f"kb-{len(rows)}"),
                           "--augment-cache", str(tmp / "c.jsonl"), *flags], env=env)
        rows.append({"variant": name, "flags": flags, "env": env, "peak_rss_mib": peak / 2**20,
                     "wall_s": time.perf_counter() - start})
        print(f"{name}: peak {peak / 2**20:,.0f} MiB, {rows[-1]['wall_s']:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "build-memory.json").write_text(json.dumps({"docs": args.docs, "rows": rows}, indent=1) + "\n")
    table = ["| build | peak RSS MiB | wall s |", "|---|---|---|"]
    table += [f"| {r['variant']} | {r['peak_rss_mib']:,.0f} | {r['wall_s']:.0f} |" for r in rows]
    (args.out / "build-memory.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
