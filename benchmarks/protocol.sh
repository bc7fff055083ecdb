#!/usr/bin/env bash
# The protocol's headline runs (docs/benchmarks.md, "The protocol"), in the order they are needed: each pair
# is `polyprag bench --split test --n 100 --seeds 0,1,2` into runs/protocol-DATASET-test-n100-MODEL.
# Everything is resumable: rerunning this script skips every finished method of every seed. After each pair
# (and whenever you stop), `benchmarks/protocol.sh collect` copies the finished rows into benchmarks/results/
# to commit; on a fresh checkout `benchmarks/protocol.sh restore` puts them back into runs/ first.
#   benchmarks/protocol.sh [run|first|collect|restore] [PAIR...]     e.g. benchmarks/protocol.sh run hotpotqa-cf:smollm2
# `first` runs only the first pass (FIRST, below) of each pair named: several pairs' first readings before any
# pair's trained baselines.
# A pair that fails is reported and the next one runs (rerun the script for it once fixed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's polyprag, whichever the venv was installed from
METHODS=closed-book,closed-book-bare,rag,rag-bare,rag-gold,poly,poly-combine,poly-uniform,poly-shuffled,prag,prag-combine,prag-shuffled,prag-shared
METHODS+=,prag-shared-combine,poly-shuffled-combine,poly-uniform-combine
# poly-shuffled-combine and poly-uniform-combine (added 2026-12-05, 23:40, controls: nothing is chosen by them): the
# retrieved passages in the prompt beside another document's routing or uniform routing. poly-combine's lead over
# rag could be any adapter's answer format rather than the documents' knowledge; these two say which.
# closed-book (the question after the reader's example exchanges; added with rag-bare, for the same reason: a claim
# that poly beats the bare reader is made against the stronger of closed-book and closed-book-bare).
# rag-bare (added 2026-12-06 before any run of it, a reader, computed once for all seeds): the retrieved passages
# asked as the -combine rows ask (no example exchanges), no adapter. rag's prompt carries the reader's example
# exchanges and the -combine rows' does not, so poly-combine − rag mixes prompt and adapters; the goal on
# poly-combine is read against the stronger of rag and rag-bare (protocol_table.py), as PRAG's against the stronger.
# rag-gold (the reader with the question's gold paragraphs in its prompt; added 2026-12-05, a reader, computed once
# for all seeds) is how much a document can give this reader at all: the scale own − shuffled is read against.
# `prag` is PRAG's published data recipe at the lr and epochs chosen on dev questions by benchmarks/prag_dev.sh's
# rule (benchmarks/prag_table.py reads its committed runs); prag-shared and prag-shuffled train the same way
# DyPRAG's translator trains on other questions' paragraphs: a counterfactual world has none (datasets.held_out).
# Its LoRAs to imitate are PRAG's published ones (lr 3e-4, 1 epoch), as DyPRAG's train_projector.sh makes them.
# DyPRAG at its best, the rule fixed 2026-12-04 (night) before its run: its published translator (lr 1e-5, 1 epoch)
# was set for ~10k training documents, here there are ~300; dyprag-tuned (lr 1e-3, 2 epochs) joins the real pairs
# if on HotpotQA dev (n = 30, seed 0: `polyprag bench --dataset hotpotqa --split dev --n 30 --methods
# closed-book-bare,dyprag,dyprag-tuned --out runs/dyprag-dev-hotpotqa-n30-smollm2`) its F1 is not below dyprag's,
# and every claim against DyPRAG is made against the stronger of the rows run.
# Applied 2026-12-05: dyprag 18.7, dyprag-tuned 10.7 (benchmarks/results/dyprag-dev/): dyprag-tuned stays out.
REAL_ONLY=,dyprag
# The readers' and poly's rows of all three seeds first (~3 h of a SmolLM2 pair's ~20 on a 2-core CPU), then the
# rest (PRAG's and DyPRAG's trainings): a pair's first reading lands in a session or two (BENCHMARKS.md, "What the
# rest costs"). Added 2026-12-06 before the second pair began; the rows are the same either way.
FIRST=closed-book,closed-book-bare,rag,rag-bare,rag-gold,poly,poly-combine,poly-uniform,poly-shuffled,poly-shuffled-combine,poly-uniform-combine
# --dtype float32: "auto" (a user's default) is bf16 on a CPU with native bf16 and fp32 elsewhere, and the machines
# this runs on across sessions differ (benchmarks/results/dtype-build-time-avx2-2026-12-05: bf16 20x slower without
# it); a pair's rows must not mix dtypes (a resume resolving otherwise is refused), and fp32 runs fast on both.
# --rows-from (added 2026-12-07 when paraphrases joined the build's defaults): the pairs begun at the defaults before
# them are kept in benchmarks/results/before-paraphrase/; each pair now runs at the new defaults into its usual folder,
# and takes from that record the rows no build setting reaches (the readers, PRAG, DyPRAG: polyprag/eval/reuse.py
# refuses a record whose other settings differ), so only poly's rows and prag-shared's (trained on poly's samples) run
# again. Those copied rows name the run and commit that computed them.
EARLIER=benchmarks/results/before-paraphrase
# The eight headline pairs, then PopQA and CWQ with SmolLM2 (the evidence issue: "seeds if time allows").
PAIRS=(hotpotqa:smollm2 hotpotqa-cf:smollm2 hotpotqa:gemma3 hotpotqa-cf:gemma3
       2wiki:smollm2 2wiki-cf:smollm2 2wiki:gemma3 2wiki-cf:gemma3 popqa:smollm2 cwq:smollm2)
declare -A MODEL=([smollm2]=smollm2-135m-instruct [gemma3]=gemma3-270m)
action=${1:-run}; shift || true
failed=()
[ $# -gt 0 ] && PAIRS=("$@")

# A bench still holding any pair's folder (one left running by a killed script) must end first: a pair run beside
# it would spoil both runs' timings. (flock exits 1 when the lock is held; any other failure checks nothing.)
for pair in "${PAIRS[@]}"; do
  name=protocol-${pair%%:*}-test-n100-${pair##*:} rc=0
  [[ $action == run || $action == first ]] && [ -e "runs/.$name.lock" ] && { flock -n "runs/.$name.lock" true || rc=$?; }
  [ $rc -eq 1 ] && { echo "protocol.sh: another polyprag bench holds runs/$name (fuser runs/.$name.lock names it);" \
                          "stop it first" >&2; exit 1; }
done
for pair in "${PAIRS[@]}"; do
  dataset=${pair%%:*} model=${pair##*:}
  name=protocol-$dataset-test-n100-$model
  case $action in
    run|first) methods=$METHODS; [[ $dataset == *-cf ]] || methods+=$REAL_ONLY
         flags=$(.venv/bin/python benchmarks/prag_table.py benchmarks/results/prag-dev --flags)  # stops on no choice
         read -ra prag <<< "$flags"
         earlier=(); [ -d "$EARLIER/$name" ] && earlier=(--rows-from "$EARLIER/$name")
         passes=("$FIRST" "$methods"); [ "$action" = first ] && passes=("$FIRST")
         for rows in "${passes[@]}"; do  # the first pass resumes at once once its rows are done
           .venv/bin/polyprag bench --dataset "$dataset" --split test --n 100 --seeds 0,1,2 \
             --model "${MODEL[$model]}" --methods "$rows" "${prag[@]}" "${earlier[@]}" --dtype float32 --out "runs/$name" \
             || { failed+=("$pair"); echo "protocol.sh: $pair failed (above); going on with the next pair" >&2; break; }
         done ;;
    collect|restore) benchmarks/results_copy.sh "$action" . "$name" ;;
    *) echo "usage: $0 [run|first|collect|restore] [DATASET:MODEL...]" >&2; exit 2 ;;
  esac
done
[ ${#failed[@]} -eq 0 ] || { echo "protocol.sh: failed pairs: ${failed[*]}" >&2; exit 1; }
