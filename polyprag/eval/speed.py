"""`polyprag bench-speed`: the speeds of the PRAG family side by side, from one run on one machine.

- Answer latency of one question at a time (p50/p95): closed-book-bare (the prompt the parametric modes
  use, no adapter: "closed-book speed"), closed-book (with the reader's examples), rag, poly (its own
  mixture per question) and prag (PEFT load + merge of the question's documents' LoRAs per question).
- Throughput of one batch of questions that each carry a different mixture, against the same questions
  closed-book-bare in one batch.
- Encoding seconds per document of poly (joint training) and prag (one training run per document) on the
  same documents: prag once on poly's samples (those a default build trains: QA pairs and contrast questions;
  samples per second per sample and epoch compare equal work) and once on its own published data recipe (what
  bench's `prag` rows train on: augment.prag_samples), each for its default epochs (poly 2, prag 1) unless
  `--poly-epochs`/`--epochs` set them; with `--prag-protocol-epochs N`, that recipe once more at N epochs, the
  schedule the protocol's prag rows train at (benchmarks/prag_table.py --flags): the PRAG poly's F1 is compared with.
- BM25 retrieval p50 (one query at a time) and index build time on synthetic corpora of growing size.
- Peak RSS of a `polyprag build` process and of a `polyprag serve` process answering a few requests,
  each measured as its own child process (the peak of that child alone).
Times are wall-clock on whatever else the machine runs: run it alone.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..lm.adapters import InventoryConfig
from ..text.augment import augment_documents, prag_samples
from ..text.corpus import Document, write_jsonl
from .evaluate import percentile
from ..lm.generate import GenerationConfig
from ..kb.encode import build_samples
from ..kb.knowledge import BuildConfig, KnowledgeBase
from ..lm.models import DEFAULT_DTYPE, SERVE_DTYPE, LoadedModel, load_model, machine, resolve_dtype
from ..baselines.prag import PragAdapters, PragConfig
from ..modes import KB_DEFAULT
from ..readers import reader
from .bench import SPEED_MODES
from ..text.retrieve import TOP_K, BM25Index
from ..method.config import TrainConfig

log = logging.getLogger("polyprag")


@dataclass(frozen=True)
class SpeedConfig:
    model: str
    n_docs: int = 20  # documents encoded by both poly and prag
    n_questions: int = 20  # single-question latency samples per mode (after one warm-up question)
    batch: int = 32  # questions in the heterogeneous batch
    k: int = TOP_K
    max_new_tokens: int = GenerationConfig().max_new_tokens  # ask's (results before 2026-12-03 used 16)
    poly_epochs: int = TrainConfig().epochs  # each method's default: what its F1 in docs/experiments.md was measured at
    prag_epochs: int = PragConfig().epochs
    prag_protocol_epochs: int = 0  # >0: PRAG's recipe timed again at these epochs (the protocol's dev choice)
    top_layers: int = InventoryConfig().top_layers  # poly's adapters on the last N blocks (0: all)
    paraphrases: int = BuildConfig().paraphrases  # build's --paraphrases: a lever's cost beside the defaults'
    retrieval_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    retrieval_queries: int = 50
    rss: bool = True  # the two child processes (build, serve): the slowest part on a small corpus
    device: str = "cpu"
    dtype: str = DEFAULT_DTYPE
    serve_dtype: str = SERVE_DTYPE  # the serve child's: serve's own default unless asked otherwise


def bench_speed(config: SpeedConfig, docs: list[Document], questions: list[str], out: Path) -> dict:
    """Every measurement above; written to `out` (JSON) and returned."""
    docs = docs[:config.n_docs]
    lm = load_model(config.model, config.device, config.dtype)
    build = BuildConfig(inventory=InventoryConfig(top_layers=config.top_layers),
                        training=TrainConfig(epochs=config.poly_epochs), paraphrases=config.paraphrases)
    augs = augment_documents(docs, build.augmenter, lm, progress=False, max_qa=build.max_qa)
    samples = build_samples(docs, augs, build)  # as the build makes them
    with tempfile.TemporaryDirectory() as tmp:
        kb, poly_s = _encode_poly(docs, lm, build)
        prag, prag_s = _encode_prag(samples, docs, config, Path(tmp) / "loras-on-poly-samples")
        recipe = prag_samples(docs, augs)  # PRAG's own data: what its published recipe trains on
        recipe_s = _encode_prag(recipe, docs, config, Path(tmp) / "loras-on-own-recipe")[1]
        protocol = _protocol_prag(recipe, docs, config, Path(tmp) / "loras-at-protocol-epochs")
        qs = (questions * (1 + config.batch // max(len(questions), 1)))[:max(config.batch, config.n_questions + 1)]
        latency = _latency(kb, prag, docs, qs[:config.n_questions + 1], config)
        batched = _batched(kb, qs[:config.batch], config)
        rss = _peak_rss(config, docs, Path(tmp)) if config.rss else {}
    retrieval = {str(n): _retrieval(n, config.retrieval_queries) for n in config.retrieval_sizes}
    base = latency[SPEED_MODES[0]]["p50_s"]
    result = {
        "config": asdict(config), "n_samples": len(samples), "latency": latency, "batched": batched,
        "encode": {"poly_s_per_doc": poly_s / len(docs), "prag_s_per_doc": prag_s / len(docs),
                   "poly_epochs": config.poly_epochs, "prag_epochs": config.prag_epochs,
                   "poly_samples_per_s": len(samples) * config.poly_epochs / poly_s,
                   "prag_samples_per_s": len(samples) * config.prag_epochs / prag_s,
                   "prag_recipe_s_per_doc": recipe_s / len(docs), "prag_recipe_samples": len(recipe)}
                  | ({"prag_protocol_epochs": config.prag_protocol_epochs,
                      "prag_protocol_s_per_doc": protocol / len(docs)} if protocol else {}),
        "retrieval": retrieval, "peak_rss_bytes": rss,
        "peak_rss_dtype": {"build": resolve_dtype(config.dtype, lm.model.device.type),
                           "serve": resolve_dtype(config.serve_dtype, lm.model.device.type)} if rss else {},
        "ratios": {f"{m.replace('-', '_')}_p50_over_closed_book": latency[m]["p50_s"] / base
                   for m in SPEED_MODES[1:]}
        | {"batched_poly_throughput_over_closed_book": batched["poly_q_per_s"] / batched["closed_book_q_per_s"],
           "encode_s_per_doc_poly_over_prag": poly_s / prag_s,
           "encode_s_per_doc_poly_over_prag_recipe": poly_s / recipe_s}
        | ({"encode_s_per_doc_poly_over_prag_protocol": poly_s / protocol} if protocol else {}),
        "retrieval_p50_ms": {n: r["p50_ms"] for n, r in retrieval.items()},
        "machine": machine(),  # times from another CPU are not comparable (bf16 ~20x apart)
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def _encode_poly(docs: list[Document], lm: LoadedModel, build: BuildConfig) -> tuple[KnowledgeBase, float]:
    start = time.perf_counter()
    kb = KnowledgeBase.build(docs, lm, build, progress=False)
    return kb, time.perf_counter() - start


def _encode_prag(samples, docs: list[Document], config: SpeedConfig, tmp: Path) -> tuple[PragAdapters, float]:
    prag = PragAdapters(load_model(config.model, config.device, config.dtype), PragConfig(epochs=config.prag_epochs),
                        tmp)
    start = time.perf_counter()
    prag.encode(samples, docs, progress=False)
    return prag, time.perf_counter() - start


def _protocol_prag(recipe, docs: list[Document], config: SpeedConfig, tmp: Path) -> float:
    """Seconds PRAG's own recipe takes at the protocol's epochs (0: not asked for)."""
    if not config.prag_protocol_epochs:
        return 0.0
    return _encode_prag(recipe, docs, replace(config, prag_epochs=config.prag_protocol_epochs), tmp)[1]


def _latency(kb: KnowledgeBase, prag: PragAdapters, docs: list[Document], questions: list[str],
             config: SpeedConfig) -> dict:
    """One question at a time, the first of each mode a warm-up that is not counted."""
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens, batch_size=1)
    hits = kb.retrieve(questions, config.k)
    readers = {name: reader(name, kb.lm, docs, kb=kb, prag=prag) for name in SPEED_MODES}
    out = {}
    for name, r in readers.items():
        times = []
        for q, hs in zip(questions, hits):
            start = time.perf_counter()
            r.answer([q], [hs], generation, progress=False)
            times.append(time.perf_counter() - start)
        times = times[1:]
        out[name] = {"p50_s": statistics.median(times), "p95_s": percentile(times, 95), "n": len(times)}
        log.info("%s: p50 %.3f s", name, out[name]["p50_s"])
    return out


BATCH_REPEATS = 3  # the median batch of each: one batch of 32 takes a few seconds, and a 2-core machine is noisy


def _batched(kb: KnowledgeBase, questions: list[str], config: SpeedConfig) -> dict:
    """All questions in one batch: each with its own mixture (poly), or none (closed-book-bare)."""
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens, batch_size=len(questions))
    hits = kb.retrieve(questions, config.k)
    readers = {"closed_book": reader(SPEED_MODES[0], kb.lm, kb.docs), KB_DEFAULT: reader(KB_DEFAULT, kb=kb)}
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    for r in readers.values():
        r.answer(questions[:2], hits[:2], generation, progress=False)  # warm-up
    for _ in range(BATCH_REPEATS):  # interleaved, so a slow spell of the machine falls on both
        for name, r in readers.items():
            start = time.perf_counter()
            r.answer(questions, hits, generation, progress=False)
            seconds[name].append(time.perf_counter() - start)
    rates = {f"{name}_q_per_s": len(questions) / statistics.median(s) for name, s in seconds.items()}
    distinct = len({tuple(h.doc_id for h in hs) for hs in hits})
    return {**rates, "questions": len(questions), "distinct_mixtures": distinct, "repeats": BATCH_REPEATS}


def _retrieval(n: int, n_queries: int, words: int = 40, vocab: int = 50_000, seed: int = 0) -> dict:
    """Synthetic passages of `words` words drawn from a Zipf-like vocabulary (as text is); query = 6 words."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(vocab)]
    names = [f"w{i}" for i in range(vocab)]
    draw = rng.choices(names, weights, k=n * words)
    docs = [Document(str(i), "", " ".join(draw[i * words:(i + 1) * words])) for i in range(n)]
    start = time.perf_counter()
    index = BM25Index.build(docs)
    build_s = time.perf_counter() - start
    del docs, draw
    times = []
    for _ in range(n_queries):
        q = " ".join(rng.choices(names[100:5000], k=6))
        start = time.perf_counter()
        index.search([q], k=3)
        times.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": statistics.median(times), "p95_ms": percentile(times, 95), "build_s": build_s}


def _peak_rss(config: SpeedConfig, docs: list[Document], tmp: Path) -> dict:
    """Peak RSS of a `polyprag build` of the documents and of a `polyprag serve` of the result answering
    three requests, each alone in a fresh child (resource.RUSAGE_CHILDREN of a one-child wrapper)."""
    write_jsonl(docs, tmp / "docs.jsonl")
    cli = [sys.executable, "-m", "polyprag.cli"]
    placement = ["--model", config.model, "--device", config.device]
    build = [*cli, "-q", "build", str(tmp / "docs.jsonl"), "--out", str(tmp / "kb"), "--epochs", str(config.poly_epochs),
             "--top-layers", str(config.top_layers), "--paraphrases", str(config.paraphrases),
             "--augment-cache", str(tmp / "c.jsonl"), *placement,
             "--dtype", config.dtype]
    serve = [*cli, "serve", str(tmp / "kb"), *placement, "--dtype", config.serve_dtype]  # the wrapper adds a --port
    return {"build": child_peak(build), "serve": child_peak(serve, serving=True)}


def child_peak(cmd: list[str], serving: bool = False, env: dict[str, str] | None = None) -> int:
    """Peak RSS in bytes of `cmd` run alone in a fresh child (with `env` added to this process's environment)."""
    script = _SERVE_PEAK if serving else _RUN_PEAK
    done = subprocess.run([sys.executable, "-c", script, json.dumps(cmd)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1])


# A wrapper process with one child: RUSAGE_CHILDREN's ru_maxrss is that child's peak (KiB on Linux, bytes
# on macOS).
_PEAK = ("import resource, sys\n"
         "def peak():\n"
         "    r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
         "    return r if sys.platform == 'darwin' else r * 1024\n")
_RUN_PEAK = _PEAK + ("import json, subprocess\n"
                     "subprocess.run(json.loads(sys.argv[1]), check=True, stdout=subprocess.DEVNULL)\n"
                     "print(peak())\n")
_SERVE_PEAK = _PEAK + (
    "import json, socket, subprocess, time, urllib.request\n"
    "with socket.socket() as s:\n"
    "    s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
    "p = subprocess.Popen(json.loads(sys.argv[1]) + ['--port', str(port)], stdout=subprocess.DEVNULL,\n"
    "                     stderr=subprocess.DEVNULL)\n"
    "url = f'http://127.0.0.1:{port}'\n"
    "for _ in range(600):\n"
    "    try:\n"
    "        urllib.request.urlopen(url + '/health', timeout=5).read(); break\n"
    "    except OSError:\n"
    "        assert p.poll() is None, 'serve exited'; time.sleep(0.5)\n"
    "for q in ('Who built the Marlow Bridge?', 'Where is Velmark?', 'When was it founded?'):\n"
    "    req = urllib.request.Request(url + '/v1/answer', method='POST', data=json.dumps({'question': q}).encode(),\n"
    "                                 headers={'Content-Type': 'application/json'})\n"
    "    urllib.request.urlopen(req, timeout=300).read()\n"
    "p.terminate(); p.wait()\n"
    "print(peak())\n")


def markdown(result: dict) -> str:
    """The table `bench-speed` prints."""
    lat, r, enc = result["latency"], result["ratios"], result["encode"]
    lines = ["| measure | value | ratio |", "|---|---|---|"]
    base = lat[SPEED_MODES[0]]["p50_s"]
    for name, v in lat.items():
        lines.append(f"| {name} answer p50 / p95 s | {v['p50_s']:.3f} / {v['p95_s']:.3f} | "
                     f"{v['p50_s'] / base:.2f}× closed-book-bare |")
    b = result["batched"]
    lines.append(f"| batch of {b['questions']} ({b['distinct_mixtures']} distinct mixtures), q/s, median of "
                 f"{b.get('repeats', 1)}: poly vs "
                 f"closed-book-bare | {b['poly_q_per_s']:.2f} vs {b['closed_book_q_per_s']:.2f} | "
                 f"{r['batched_poly_throughput_over_closed_book']:.2f}× |")
    top = result["config"].get("top_layers", 0)
    blocks = f", last {top} blocks" if top else ""
    if para := result["config"].get("paraphrases"):
        blocks += f", {para} paraphrases, {result['n_samples']} samples"
    lines.append(f"| encode s/doc: poly ({enc['poly_epochs']} epochs{blocks}) vs prag ({enc['prag_epochs']}), "
                 f"its own data recipe | {enc['poly_s_per_doc']:.2f} vs {enc['prag_recipe_s_per_doc']:.2f} | "
                 f"{r['encode_s_per_doc_poly_over_prag_recipe']:.2f}× |")
    if "prag_protocol_s_per_doc" in enc:
        lines.append(f"| encode s/doc: poly vs prag at the protocol's {enc['prag_protocol_epochs']} epochs, its own "
                     f"data recipe | {enc['poly_s_per_doc']:.2f} vs {enc['prag_protocol_s_per_doc']:.2f} | "
                     f"{r['encode_s_per_doc_poly_over_prag_protocol']:.2f}× |")
    lines.append(f"| encode s/doc: poly vs prag on poly's samples ({result['n_samples']}) | "
                 f"{enc['poly_s_per_doc']:.2f} vs {enc['prag_s_per_doc']:.2f} | "
                 f"{r['encode_s_per_doc_poly_over_prag']:.2f}× |")
    lines.append(f"| training samples/s (per sample and epoch): poly vs prag | {enc['poly_samples_per_s']:.2f} vs "
                 f"{enc['prag_samples_per_s']:.2f} | {enc['poly_samples_per_s'] / enc['prag_samples_per_s']:.2f}× |")
    for n, v in result["retrieval"].items():
        lines.append(f"| BM25 p50 / p95 ms, {int(n):,} passages (index built in {v['build_s']:.1f} s) | "
                     f"{v['p50_ms']:.2f} / {v['p95_ms']:.2f} | |")
    for name, v in result["peak_rss_bytes"].items():
        dtype = result.get("peak_rss_dtype", {}).get(name)
        lines.append(f"| peak RSS of `{name}`{f' (base model in {dtype})' if dtype else ''} | {v / 2**20:,.0f} MiB | |")
    return "\n".join(lines)
