#!/usr/bin/env bash
# The GPU checks in one command, for a machine lent for a few minutes: the CUDA tests, then the benchmark on CUDA.
#   here:  make gpu-wheels        (once: the pure-Python wheels such a machine may lack, into .whl/)
#   there: bash bench/gpu_check.sh  (with .whl carried along; logs also go to $OUT when it is set)
# It runs from the source tree (PYTHONPATH=.), so nothing is installed but the carried wheels.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/gpu_check.log
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 REGBENCH_CACHE=/tmp/regbench-cache
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
  tests=$?
  timeout 420 python3 bench/bench.py --device cuda --repeats 2
  bench=$?
  echo "gpu_check: tests exit $tests, bench exit $bench"
  exit $((tests || bench))
} 2>&1 | tee "$log"
