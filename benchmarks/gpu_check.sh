#!/usr/bin/env bash
# Every GPU path of expmae once, in under 8 minutes, as one table (python -m benchmarks.gpu_check):
# bf16 / torch.compile ViT-L pretraining steps (image + video, samples/s, MFU), DDP through the
# pretraining launcher on the visible GPUs, extractor batching, GPU video decode.
#
#   benchmarks/gpu_check.sh                 # PY=.venv/bin/python by default when it exists
#
# Without a CUDA device it prints every row as skipped and exits 0 (tests/test_mae_schedule.py runs it so).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
LIMIT=${GPU_CHECK_LIMIT_S:-480}  # the whole check's time cap
timeout --kill-after=10 "$LIMIT" "$PY" -m benchmarks.gpu_check "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "gpu_check: stopped at the ${LIMIT} s cap (rows above are what finished)" >&2
fi
exit "$rc"
