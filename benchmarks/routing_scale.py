"""Knowledge bases of 10,000 to 1,000,000 documents: how long one takes to load, the memory it holds, and that it
answers. The documents and their routing rows are synthetic (short generated paragraphs, random fp16 logits);
the inventory, manifest and base model are those of a real KB (`KB`). Each size is written once with polyprag's
own store (checksums and all), then measured in a fresh process: the KB's load time (with the time of each of
its parts), the process's memory after the model, after the KB and after one answer, and the peak, and how
much of the routing file is resident after answering (the rows the question read).

    polyprag demo --out runs/demo-kb        # any KB will do; this one is the default model's
    .venv/bin/python benchmarks/routing_scale.py runs/demo-kb --sizes 10000,100000,1000000 \\
        --out benchmarks/results/routing-scale

The files are freshly written, so the page cache is warm: load times are those of a KB read recently.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from polyprag.kb import store
from polyprag.text.corpus import Document, read_written
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.text.retrieve import BM25Index

WORDS = ("bridge", "river", "engineer", "harbour", "canal", "mill", "tower", "market", "library", "railway",
         "orchard", "glacier", "observatory", "lighthouse", "monastery", "quarry", "vineyard", "foundry")
QUESTION = "Which engineer built the bridge over the canal near the observatory?"


def synthetic_docs(n: int) -> list[Document]:
    return [Document(f"syn-{i}", f"Synthetic place {i}", f"Place {i} has a {WORDS[i % len(WORDS)]} and a "
                     f"{WORDS[(i * 7 + 3) % len(WORDS)]}, first recorded in {1000 + i % 1000}.") for i in range(n)]


def write_kb(base: Path, n: int, folder: Path) -> float:
    """A KB of n synthetic documents with `base`'s inventory and manifest; returns the seconds it took."""
    start = time.perf_counter()
    stored = store.read(base)
    _, g, m = stored.routing["logits"].shape
    logits = torch.empty(n, g, m, dtype=torch.float16)  # (n, G, M), filled in pieces: no fp32 copy of it all
    gen = torch.Generator().manual_seed(0)
    for i in range(0, n, 50_000):
        rows = min(50_000, n - i)
        logits[i:i + rows] = (2 * torch.randn(rows, g, m, generator=gen)).to(torch.float16)
    docs = synthetic_docs(n)
    kb = store.Stored(replace(stored.manifest, n_docs=n), stored.inventory, {"logits": logits}, docs, [],
                      BM25Index.build(docs))
    shutil.rmtree(folder, ignore_errors=True)
    store.write(folder, kb, None)
    return time.perf_counter() - start


def memory() -> dict[str, int]:
    """This process's resident memory now (anonymous and file-backed pages apart) and at its peak, in bytes."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    # VmHWM, not getrusage's ru_maxrss: that one keeps the parent's peak across fork and exec
    return {"rss": fields["VmRSS"], "rss_anon": fields["RssAnon"], "rss_file": fields["RssFile"],
            "peak_rss": fields["VmHWM"]}


def mapped_resident(path: Path) -> int:
    """Bytes of `path` resident in this process through its memory maps (/proc/self/smaps): the rows read."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0]:  # a mapping's first line: address range, perms, ..., path
            inside = line.rstrip().endswith(str(path.resolve()))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


def measure(folder: Path, spec: str) -> dict:
    """In this (fresh) process: the model, then the KB, then one answer; the parts of a load timed apart after it."""
    lm = load_model(spec, dtype="float32")  # float32: what its recorded results ran in (the API default then)
    after_model = memory()
    start = time.perf_counter()
    kb = KnowledgeBase.load(folder, lm)
    load_s = time.perf_counter() - start
    after_load = memory()
    start = time.perf_counter()
    answer = kb.answer([QUESTION], "poly", k=3, progress=False)[0]
    answer_s = time.perf_counter() - start
    after_answer = memory()
    routing_resident = mapped_resident(folder / "routing.safetensors")
    parts = {}
    for name, part in (("checksums", lambda: store.checked_manifest(folder)),
                       ("routing_map", lambda: store.read_mapped(folder / "routing.safetensors")),
                       ("routing_nan_check", lambda: store.nonfinite_in_file(folder / "routing.safetensors")),
                       ("docs", lambda: read_written(folder / "docs.jsonl")),
                       ("index", lambda: BM25Index.load(folder / "index"))):
        start = time.perf_counter()
        part()
        parts[name] = round(time.perf_counter() - start, 3)
    return {"load_s": round(load_s, 3), "load_parts_s": parts, "answer_s": round(answer_s, 3),
            "answer": answer.answer, "memory_after_model": after_model, "memory_after_load": after_load,
            "memory_after_answer": after_answer, "routing_resident_bytes": routing_resident}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kb", type=Path, help="a KB whose inventory, manifest and base model the synthetic KBs take")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--work", type=Path, default=Path("runs/routing-scale"), help="where the synthetic KBs go")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/routing-scale"))
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process: one KB, JSON to stdout
    args = p.parse_args()
    spec = json.loads((args.kb / "manifest.json").read_text())["base_model"]["spec"]
    if args.measure:
        print(json.dumps(measure(args.measure, spec)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        folder = args.work / f"kb-{n}"
        write_s = write_kb(args.kb, n, folder)
        child = subprocess.run([sys.executable, __file__, str(args.kb), "--measure", str(folder)], check=True,
                               capture_output=True, text=True)
        row = {"n_docs": n, "write_s": round(write_s, 1), **json.loads(child.stdout.strip().splitlines()[-1])}
        shape = store.read_mapped(folder / "routing.safetensors")["logits"].shape
        row["routing_file_bytes"] = (folder / "routing.safetensors").stat().st_size
        row["routing_fp32_copy_bytes"] = shape.numel() * 4  # what loading the table into fp32 memory would hold
        row["kb_anon_bytes"] = row["memory_after_load"]["rss_anon"] - row["memory_after_model"]["rss_anon"]
        rows.append(row)
        print(f"{n:>9,} documents: load {row['load_s']:.2f} s {row['load_parts_s']}, KB memory "
              f"{row['kb_anon_bytes'] / 2**20:,.0f} MiB anonymous (an fp32 table alone: "
              f"{row['routing_fp32_copy_bytes'] / 2**20:,.0f} MiB; of its file {row['routing_resident_bytes']:,} bytes "
              f"resident), answer {row['answer_s']:.2f} s, peak "
              f"{row['memory_after_answer']['peak_rss'] / 2**20:,.0f} MiB", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"kb": str(args.kb), "model": spec, "rows": rows}, indent=1))
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
