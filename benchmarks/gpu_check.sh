#!/usr/bin/env bash
# polyprag on a CUDA GPU in bf16, in one short run: the tests that need CUDA, then `bench` on the bundled
# sample corpus with base models of SmolLM2-135M's and Gemma-3-270M's real architecture and tokenizer but
# random weights (the weights are too large to carry to a borrowed GPU; compute per step is the same, so
# the times are real, the F1s are not).
#   here:      bash benchmarks/gpu_check.sh prepare CARRY      (configs, tokenizers, missing wheels -> CARRY)
#   GPU host:  bash benchmarks/gpu_check.sh run CARRY OUT      (logs and results -> OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's polyprag, whichever the venv was installed from
step=$1 carry=$2
models=(smollm2-135m-instruct gemma3-270m)
if [ "$step" = prepare ]; then
  mkdir -p "$carry"
  for m in "${models[@]}"; do
    mkdir -p "$carry/$m"
    cp ~/.cache/polyprag/models/"$m"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json} "$carry/$m/"
    cp ~/.cache/polyprag/models/"$m"/chat_template.jinja "$carry/$m/" 2>/dev/null || true
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d "$carry" bm25s==0.3.16
  exit
fi
out=$3
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$carry"/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" >> "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_poly.py > "$out/pytest.log" 2>&1
echo "pytest exit $?" >> "$out/pytest.log"
python3 - "$carry" <<'PY'
import sys, torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
for m in ("smollm2-135m-instruct", "gemma3-270m"):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(f"{sys.argv[1]}/{m}"))
    model.save_pretrained(f"/tmp/models/{m}")
    AutoTokenizer.from_pretrained(f"{sys.argv[1]}/{m}").save_pretrained(f"/tmp/models/{m}")
PY
for m in "${models[@]}"; do
  python3 -c "import sys; from polyprag.cli import main; sys.exit(main(sys.argv[1:]))" -q bench \
    --dataset sample --n 30 --corpus-mode closed --model "/tmp/models/$m" --device cuda --dtype bfloat16 \
    --methods closed-book-bare,rag,poly,poly-combine,prag --out "/tmp/bench-$m" > "$out/bench-$m.log" 2>&1
  cp "/tmp/bench-$m/results.json" "$out/results-$m.json"
done
