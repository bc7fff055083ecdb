"""PRAG's adapters trained one document at a time against several side by side (`PragAdapters.encode(at_once=k)`):
seconds per document and how far the saved adapters are apart, on HotpotQA dev paragraphs (their lengths are the
protocol's), for PRAG's own recipe and for poly's samples (prag-shared), at the protocol's 4 epochs.

    .venv/bin/python benchmarks/prag_side_by_side.py --docs 16 --at-once 1,4,8 --out runs/prag-side-by-side

Prints a table and writes OUT/prag-side-by-side.json. Alone on the machine: it is a timing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from polyprag.baselines.prag import PragAdapters, PragConfig
from polyprag.kb.manifest import BuildConfig
from polyprag.lm.models import load_model, machine
from polyprag.kb.encode import build_samples
from polyprag.text.augment import PRAG_QA, augment_documents, prag_samples
from polyprag.text.datasets import Split, load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--at-once", default="1,4,8")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--recipes", default="prag,prag-shared")
    p.add_argument("--out", default="runs/prag-side-by-side")
    args = p.parse_args()
    ks = [int(k) for k in args.at_once.split(",")]
    _, corpus = load_dataset("hotpotqa", args.data_dir, 40, split=Split("dev"))
    docs = corpus[:args.docs]
    lm = load_model(args.model, dtype="float32")
    recipes = {"prag": prag_samples(docs, augment_documents(docs, "rules", lm, progress=False, max_qa=PRAG_QA)),
               "prag-shared": build_samples(docs, augment_documents(docs, "rules", lm, progress=False,
                                                                    max_qa=BuildConfig().max_qa), BuildConfig())}
    recipes = {r: recipes[r] for r in args.recipes.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, samples in recipes.items():
            for k in ks:
                folder = Path(tmp) / f"{recipe}-{k}"
                prag = PragAdapters(load_model(args.model, dtype="float32"), PragConfig(epochs=args.epochs), folder)
                start = time.perf_counter()
                prag.encode(samples, docs, progress=False, at_once=k)
                seconds = time.perf_counter() - start
                diff = max(_max_diff(folder, Path(tmp) / f"{recipe}-{ks[0]}", d) for d in range(len(docs)))
                rows.append({"recipe": recipe, "at_once": k, "samples": len(samples), "s_per_doc": seconds / len(docs),
                             "max_abs_diff_vs_first": diff})
                print(f"{recipe:12s} at_once {k:2d}: {seconds / len(docs):6.2f} s/doc "
                      f"({len(samples)} samples), adapters within {diff:.2e} of at_once {ks[0]}", flush=True)
    base = {r["recipe"]: r["s_per_doc"] for r in rows if r["at_once"] == ks[0]}
    for r in rows:
        r["speedup"] = base[r["recipe"]] / r["s_per_doc"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prag-side-by-side.json").write_text(json.dumps(
        {"config": vars(args), "docs": len(docs), "rows": rows, "machine": machine(),
         "threads": torch.get_num_threads()}, indent=1))
    print("| recipe | at once | s/doc | speed-up | max |Δ| of the adapters |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['at_once']} | {r['s_per_doc']:.2f} | {r['speedup']:.2f}× | "
              f"{r['max_abs_diff_vs_first']:.1e} |")


def _max_diff(a: Path, b: Path, doc: int) -> float:
    x, y = (load_file(f / str(doc) / "adapter_model.safetensors") for f in (a, b))
    return max((x[k] - y[k]).abs().max().item() for k in x)


if __name__ == "__main__":
    main()
