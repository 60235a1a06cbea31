#!/usr/bin/env bash
# The GPU checks in one script, for a machine with a CUDA GPU (such as the one the `device` tool lends):
#
#   bash benchmarks/device_check.sh        # results under $OUT (the device tool's), else ./device_out
#
# 1. The GPU-marked tests: extraction on the GPU against the CPU result (float32 and bf16, killed and
#    resumed), raw per-sequence embeddings, a training loop in bf16.
# 2. The GPU part of the extraction benchmark (`embedding_extraction.py --gpu-only`): grover-base
#    windows/s, where a call's time goes, the projected time for hg19. Its section is written into a
#    copy of BENCHMARKS.md under the results folder (copy it into BENCHMARKS.md by hand); the raw
#    figures go to gpu.json beside it.
#
# It installs nothing: the machine's python3 must hold torch (CUDA), transformers, tokenizers,
# safetensors, numba, numpy, pandas, pyarrow, scikit-learn, tqdm and pytest (the device tool's image
# does; checked with transformers 5.17 / tokenizers 0.23.2 / huggingface_hub 1.33, as that image has,
# on the CPU). The data (demo genome, 600-cycle BPE, a 10 Mbp tiled genome) builds in about 10 s on 2
# cores here. Each step's log is kept even when a later one fails.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device_out}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PYTHON:-python3}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" -c "import sys, torch, transformers, numba, numpy; print('python', sys.version.split()[0], '| torch',
torch.__version__, '| CUDA', torch.cuda.is_available(), '| transformers', transformers.__version__, '| numba',
numba.__version__, '| numpy', numpy.__version__)"; } 2>&1 | tee "$out/machine.txt"
if [ -z "${ALLOW_NO_GPU:-}" ] && ! "$PY" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "torch sees no CUDA GPU here: nothing to check (ALLOW_NO_GPU=1 runs the script anyway, as a dry run)"
  exit 2
fi

"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/grover_core/test_extract.py \
  tests/grover_core/test_embed_sequences.py tests/grover_core/test_training.py 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}

cp BENCHMARKS.md "$out/BENCHMARKS.md"
"$PY" benchmarks/embedding_extraction.py --gpu-only --out "$out/BENCHMARKS.md" --json "$out/gpu.json" \
  --cache "${TMPDIR:-/tmp}/grover_extract_bench" 2>&1 | tee "$out/gpu_benchmark.log"
bench=${PIPESTATUS[0]}

echo "GPU tests: exit $tests; GPU benchmark: exit $bench; results in $out"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
