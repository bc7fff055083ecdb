"""Load on the HTTP service over loopback: concurrent askers while new documents are added (Poly-z jobs).

Serves a copy of KB (the given folder is never changed) with the KB's own base model, runs
`polyprag.service.loadtest.run_load`, then reopens the copy from disk and checks that every added document is in
it. Prints a table and writes OUT/serve-load.json.

    .venv/bin/python benchmarks/serve_load.py KB --clients 8 --seconds 30 --adds 3 --out DIR

Each added document is an invented person with a question only that document answers. With --cli-adds N,
N more are added by `polyprag add` processes on the served folder at the same time as the service's own
jobs (a writer refused because the other one saved first tries again); each must be served as well.
With --replicas N, N more `polyprag serve` processes serve the same folder: the clients ask all servers in
turn, and each replica must serve every added document (the seconds from a job's end to that are reported).
With --hostile N, N more clients send what a hostile client would (`loadtest.ATTACKS`: undecodable text,
over-long questions, document floods, a rebinding Host header, huge bodies, special tokens), without the write
key the server is started with: each must get a 4xx while the honest clients get every answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import random
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

from polyprag.text.corpus import load_corpus
from polyprag.text.datasets import load_questions
from polyprag.kb.lifecycle import read_manifest
from polyprag.modes import SERVED
from polyprag.service.loadtest import Probe, cli_add, live_server, replica, run_load
from polyprag.service.serve import API_KEY_ENV, create_app

FIRST = ["Orrin", "Maela", "Tobin", "Ysolde", "Caspar", "Liesl", "Joran", "Edda", "Piet", "Runa", "Aldo", "Sefa"]
LAST = ["Pell", "Varga", "Munk", "Oster", "Halloran", "Brisk", "Tamsin", "Quill", "Dorne", "Hake", "Fenwright"]
JOBS = ["painter", "glassblower", "cartographer", "bell founder", "beekeeper", "shipwright", "organ builder"]
TOWNS = ["Velmark", "Ossenlaw", "Hobbet Ferry", "Pellick Scar", "Kelderhune", "Immerveld", "Quellmoor"]


def probes(n: int, seed: int) -> list[Probe]:
    rng, out = random.Random(seed), []
    for i in range(n):
        name, job = f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.choice(JOBS)
        year, town = 1850 + rng.randrange(120), rng.choice(TOWNS)
        text = f"{name} was a {job} born in {year} in {town}. {name.split()[0]} trained in {rng.choice(TOWNS)}."
        out.append(Probe({"id": f"load-{seed}-{i}", "title": name, "text": text},
                         f"Which {job} was born in {year} in {town}?"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("kb", help="a knowledge base folder (served from a temporary copy)")
    p.add_argument("--questions", help="JSONL of {question}; default: the bundled sample's questions")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--adds", type=int, default=3, help="documents added, one job each, while the clients ask")
    p.add_argument("--grow", default="0", help="the service's additions grow the inventory: N or auto (default 0)")
    p.add_argument("--cli-adds", type=int, default=0, help="documents added by `polyprag add` beside the service")
    p.add_argument("--replicas", type=int, default=0, help="more `polyprag serve` processes on the same folder")
    p.add_argument("--add-every", type=float, default=2.0, help="seconds between one job's end and the next add")
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--modes", default=",".join(SERVED), help="the askers take these modes in turn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hostile", type=int, default=0, help="hostile clients beside the honest ones")
    p.add_argument("--out", required=True, help="folder for serve-load.json")
    args = p.parse_args()
    path = args.questions or files("polyprag") / "data" / "sample" / "questions.jsonl"
    questions = [q.question for q in load_questions(path)]
    new, outside = probes(args.adds, args.seed), probes(args.cli_adds, args.seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "kb"
        shutil.copytree(args.kb, folder)
        before = read_manifest(folder)
        key = secrets.token_hex(16)  # the honest adder's; hostile clients never have it
        os.environ[API_KEY_ENV] = key
        with live_server(create_app(folder, dtype="float32")) as url, contextlib.ExitStack() as stack:
            others = tuple(stack.enter_context(replica(folder)) for _ in range(args.replicas))
            report = run_load(url, questions, new, args.clients, args.seconds, args.add_every, args.max_new_tokens,
                              seed=args.seed, modes=tuple(args.modes.split(",")), outside_probes=outside,
                              outside=cli_add(folder) if outside else None,
                              grow=int(args.grow) if args.grow.isdigit() else args.grow,
                              old_ids=[d.id for d in load_corpus(folder / "docs.jsonl")][:20],
                              replicas=others, hostile=args.hostile, headers={"X-API-Key": key}).summary()
        on_disk = {d.id for d in load_corpus(folder / "docs.jsonl")}
        after = read_manifest(folder)
    added = [pr.doc["id"] for pr in new[: report["documents_added"]]] + [pr.doc["id"] for pr in outside[: report["outside_added"]]]
    report.update(kb=str(args.kb), model=before["base_model"]["spec"], kb_docs_before=before["n_docs"],
                  kb_docs_after=after["n_docs"], kb_version_before=before["version"],
                  kb_version_after=after["version"], missing_on_disk=[i for i in added if i not in on_disk],
                  max_new_tokens=args.max_new_tokens, modes=args.modes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve-load.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    rows = ["requests", "errors", "throughput_rps", "latency_p50_s", "latency_p95_s", "latency_max_s", "jobs_done",
            "job_seconds_mean", "answered_during_jobs", "documents_added", "lost_documents", "missing_on_disk",
            "probes_retrieved", "outside_added", "outside_refused", "old_routing_changed", "replicas",
            "replica_seen_s_max", "replica_probes_retrieved", "kb_docs_before", "kb_docs_after",
            "hostile_requests", "hostile", "hostile_failures"]
    print(f"| {args.clients} clients, {report['seconds']} s, {report['model']}, modes {args.modes} | |\n|---|---|")
    for key in rows:
        print(f"| {key} | {report[key]} |")
    print(f"wrote {out / 'serve-load.json'}")


if __name__ == "__main__":
    main()
