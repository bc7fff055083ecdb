"""Storage at scale: Poly-PRAG's whole knowledge base against PRAG's adapters for N real paragraphs.

The bench runs encode a few hundred paragraphs, where Poly-PRAG's shared inventory still outweighs its
routing rows. Training a knowledge base of thousands of paragraphs takes hours on a 2-core CPU, but
training does not change a file's size: this writes knowledge bases with `KnowledgeBase.build` at 0 epochs
and `save` (the same code and files as a trained one) over the first N paragraphs of the shared datasets,
trains one real PRAG adapter with PEFT, and measures the bytes on disk. PRAG keeps one adapter folder of
that same size per document. `--trained KB` checks that a trained knowledge base's inventory and routing
rows have the sizes measured here.

    .venv/bin/python benchmarks/storage_scale.py --sizes 300,1000,4000,8000,9600 \
        --trained runs/2wiki-n100-smollm2-bench/kb --out benchmarks/results/storage-scale-smollm2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from safetensors import safe_open

from polyprag.lm.adapters import InventoryConfig
from polyprag.text.augment import augment_documents, training_samples
from polyprag.text.datasets import load_dataset
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.kb.lifecycle import read_manifest
from polyprag.lm.models import load_model
from polyprag.baselines.prag import PragAdapters, PragConfig
from polyprag.method.config import TrainConfig

SOURCES = (("hotpotqa", 500), ("2wiki", 500), ("popqa", 1000))  # every paragraph of the shared subsets


def paragraphs(data_dir: str) -> list:
    seen, docs = set(), []
    for name, n in SOURCES:
        for d in load_dataset(name, data_dir, n)[1]:
            if d.id not in seen:
                seen.add(d.id)
                docs.append(d)
    return docs


def prag_bytes_per_doc(model: str, doc, work: Path) -> int:
    """Train and save one document's adapter as the PRAG baseline does; its folder's size in bytes."""
    lm = load_model(model, dtype="float32")  # float32: what its recorded results ran in
    samples = training_samples([doc], augment_documents([doc], "rules", max_qa=3, progress=False), 0, False)
    adapters = PragAdapters(lm, PragConfig(), work / "prag")
    adapters.encode(samples, [doc], progress=False)
    return adapters.storage_bytes(1)


def poly_sizes(model: str, docs: list, routing: str, folder: Path, storage: str = "bf16", top_layers: int = 0) -> dict:
    # uniform init: cluster init also stores k-means centroids (M × d fp32, a fixed cost like the inventory),
    # which would blur the per-document growth of routing.safetensors that this measures
    build = BuildConfig(routing=routing, routing_init="uniform", max_qa=3, context_qa=0, rewrite=False,
                        storage=storage, inventory=InventoryConfig(top_layers=top_layers), training=TrainConfig(epochs=0))
    kb = KnowledgeBase.build(docs, load_model(model, dtype="float32"), build, progress=False)  # a fresh model: build injects into it
    kb.save(folder)
    return kb.storage_bytes(folder)


def check_trained(trained: Path, rows: list[dict]) -> dict:
    """A trained KB's inventory file and routing row must have the sizes measured untrained."""
    m = read_manifest(trained)
    with safe_open(str(trained / "routing.safetensors"), "pt") as f:
        logits = f.get_tensor("logits")
    row_bytes = logits[0].numel() * logits.element_size()
    inv = (trained / "inventory.safetensors").stat().st_size
    row = next(r for r in rows if r["routing"] == m["routing"])
    return {"kb": str(trained), "routing": m["routing"], "n_docs": m["n_docs"], "inventory_bytes": inv,
            "routing_bytes_per_doc": row_bytes,
            "matches": inv == row["inventory_bytes"] and row_bytes == row["poly_bytes_per_doc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--sizes", default="300,1000,4000,8000,9600")
    ap.add_argument("--trained", type=Path, help="a trained KB (default settings) to check the sizes against")
    ap.add_argument("--storage", choices=("fp32", "bf16", "int8"),
                    help="the inventory's precision (default: the --trained KB's, else bf16 as builds store today)")
    ap.add_argument("--top-layers", type=int, default=0, help="the inventory on the last N blocks only (default 0: all)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    docs = paragraphs(args.data_dir)
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > len(docs):
        raise SystemExit(f"--sizes {args.sizes}: the shared datasets hold {len(docs)} paragraphs; ask for fewer.")
    rows = []
    # sized as the trained KB is stored (a KB made before bf16 storage is fp32), else as builds store today
    precision = args.storage or ((read_manifest(args.trained) or {}).get("storage", "fp32") if args.trained else "bf16")
    with tempfile.TemporaryDirectory() as tmp:
        prag = prag_bytes_per_doc(args.model, docs[0], Path(tmp))
        for routing in ("fine", "coarse"):
            for n in sizes:
                s = poly_sizes(args.model, docs[:n], routing, Path(tmp) / f"kb-{routing}-{n}", precision, args.top_layers)
                poly = s["inventory"] + s["routing"]
                rows.append({"n_docs": n, "routing": routing, "prag_bytes": n * prag, "inventory_bytes": s["inventory"],
                             "routing_bytes": s["routing"], "poly_bytes": poly, "kb_folder_bytes": s["total"],
                             "ratio_whole": round(n * prag / poly, 1), "prag_bytes_per_doc": prag,
                             "poly_bytes_per_doc": s["routing_per_doc"],
                             "ratio_per_doc": round(prag / s["routing_per_doc"], 1)})
                print(json.dumps(rows[-1]), flush=True)
    result = {"model": args.model, "paragraphs": len(docs), "storage": precision, "top_layers": args.top_layers, "rows": rows,
              "trained_check": check_trained(args.trained, rows) if args.trained else None}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "storage-scale.json").write_text(json.dumps(result, indent=1))
    (args.out / "storage-scale.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    inv, prag = BuildConfig().inventory, PragConfig()
    lines = [f"Model `{result['model']}`, {result['paragraphs']:,} paragraphs available; Poly-PRAG M = {inv.n_adapters} "
             f"adapters of rank {inv.rank} stored in {result.get('storage', 'fp32')} (routing fp16 unless fp32), PRAG "
             f"rank {prag.rank} (PEFT's fp32 files), both on {'/'.join(inv.targets)}; Poly-PRAG on "
             f"{_blocks(result.get('top_layers', 0))}, PRAG on every block.", "",
             "| documents | routing | PRAG adapters | Poly inventory | Poly routing | PRAG / Poly (whole) "
             "| bytes/doc PRAG | bytes/doc Poly | PRAG / Poly (per doc) | KB folder (with text, index) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['n_docs']:,} | {r['routing']} | {r['prag_bytes']:,} | {r['inventory_bytes']:,} "
                     f"| {r['routing_bytes']:,} | **{r['ratio_whole']}×** | {r['prag_bytes_per_doc']:,} "
                     f"| {r['poly_bytes_per_doc']:,} | {r['ratio_per_doc']}× | {r['kb_folder_bytes']:,} |")
    check = result["trained_check"]
    if check:
        lines += ["", f"Trained KB {check['kb']} ({check['n_docs']} documents, {check['routing']} routing): "
                      f"inventory {check['inventory_bytes']:,} bytes, routing row {check['routing_bytes_per_doc']:,} "
                      f"bytes; the same as measured above: {check['matches']}."]
    return "\n".join(lines) + "\n"


def _blocks(top_layers: int) -> str:
    return f"the last {top_layers} blocks" if top_layers else "every block"


if __name__ == "__main__":
    main()
