#!/usr/bin/env bash
# One short GPU check for the occlusion engine (< 5 minutes on an H100/H200):
#   1. the CUDA exactness tests of tests/test_occlusion.py (incremental == full on the GPU,
#      channels_last model, bf16/fp16 error reported and <= 5e-3);
#   2. the GPU benchmark lines of benchmarks/RESULTS.md (one JSON line each):
#      ResNet-18 224x224 patch 16 stride 1 (43,681 positions) in fp32 (exact), tf32 and bf16,
#      VGG-16 224x224 patch 16 stride 4 (2,809 positions) in fp32 and bf16;
#      each against Captum Occlusion (fp32, perturbations_per_eval 1024) and the plain
#      batched recompute, median of 3 runs in one process;
#   3. the explorer's kernel side on the GPU: ResNet-18 224x224, a click to the stride-4
#      occlusion map complete (issue target < 0.3 s), benchmarks/explorer.py --kernel-only.
# Usage: bash benchmarks/gpu_check.sh [python]   (default: .venv/bin/python, else python3)
# Writes everything to stdout and to $OUT/gpu_check.log when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
LOG="${OUT:-/tmp}/gpu_check.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  date -u
  nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv || true
  "$PY" -c "import torch, captum; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'captum', captum.__version__, 'gpu', torch.cuda.get_device_name(0))"

  echo "== CUDA exactness tests"
  timeout 150 "$PY" -m pytest tests/test_occlusion.py -q -p no:cacheprovider -k cuda -rA \
    || echo "CUDA TESTS FAILED (rc=$?)"

  echo "== GPU benchmark"
  B="timeout 200 $PY benchmarks/occlusion.py --device cuda --patch 16 --captum-ppe 1024 --repeats 3"
  $B --model resnet18 --stride 1 --precision fp32 || echo "resnet18 fp32 FAILED"
  $B --model resnet18 --stride 1 --precision bf16 --no-full || echo "resnet18 bf16 FAILED"
  $B --model resnet18 --stride 1 --precision tf32 --no-full --no-captum || echo "r18 tf32 FAILED"
  $B --model vgg16 --stride 4 --precision fp32 || echo "vgg16 fp32 FAILED"
  $B --model vgg16 --stride 4 --precision bf16 --no-full --no-captum || echo "vgg16 bf16 FAILED"

  echo "== Explorer on the GPU"
  timeout 200 "$PY" benchmarks/explorer.py --kernel-only --model resnet18 --device cuda \
    --clicks 10 || echo "explorer FAILED"
  date -u
} 2>&1 | tee "$LOG"
