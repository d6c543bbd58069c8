#!/bin/bash
# One prepared GPU training run of the dense model (models/synthvqa/README.md,
# "The dense variant"), for a bare machine that has Python with torch,
# transformers, sentencepiece, protobuf, numpy and Pillow and no network (the lent GPU
# machines' image has all six), started in the repository root:
#
#     bash models/synthvqa/gpu-train.sh            # OUT=$OUT, or ./gpu-out
#
# Arguments go to train.py after the script's own (e.g. --set train.batch=64);
# DEVICE=cpu with a few --set runs the same plumbing on a CPU (README).
#
# It renders the train and val splits with every core (about 2.4 GB in
# memory and in the .npy cache under /tmp), trains with config-dense.json on
# CUDA for MINUTES (default 5.5) of wall clock, and writes to $OUT:
#   train.log            the run's log (config, versions, losses, val accuracy)
#   val.json             the final val accuracy by type and the step count
#   hf.tar.gz.part-*     the HF checkpoint (tar of RUN/hf in pieces of at most
#                        15 MB: the device tool returns files up to 16 MiB)
#   env.txt              GPU, Python and package versions
#   stdout-tail.txt      the last 400 lines train.py printed (a traceback)
# train.py runs under `timeout LIMIT_S` (560): past it the log and stdout
# tail still come back (exit 124), without a checkpoint.
# Here afterwards: cat DIR/hf.tar.gz.part-* | tar xzf - -C /tmp/dense-run,
# then export.py /tmp/dense-run/hf and the evaluations (README).
# The whole call stays under 10 minutes: about 2.5 min of rendering and
# start-up, MINUTES of training (vision warm-up included), under a minute of
# final evaluation and saving.
set -euo pipefail
OUT=${OUT:-$PWD/gpu-out}
MINUTES=${MINUTES:-5.5}
DEVICE=${DEVICE:-cuda}
RUN=${RUN:-/tmp/dense-run}
mkdir -p "$OUT" "$RUN"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    nproc
    $PY -c 'import sys, torch, transformers, sentencepiece, google.protobuf, numpy, PIL
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      "transformers", transformers.__version__, "sentencepiece", sentencepiece.__version__,
      "numpy", numpy.__version__, "pillow", PIL.__version__)'
} 2>&1 | tee "$OUT/env.txt"

procs=$(nproc)
status=0
# a hard stop before the device tool's 600 s, so that the log still comes back
# if rendering or the final evaluation runs long
timeout "${LIMIT_S:-560}" $PY models/synthvqa/train.py --config models/synthvqa/config-dense.json --device "$DEVICE" \
    --out "$RUN" --minutes "$MINUTES" --set "train.render_procs=$procs" \
    --set "train.cache=\"$RUN/cache\"" "$@" 2>&1 | tail -n 400 > "$OUT/stdout-tail.txt" || status=$?
cp "$RUN/train.log" "$OUT/train.log" 2>/dev/null || true
cp "$RUN/val.json" "$OUT/val.json" 2>/dev/null || true
if [ -f "$RUN/hf/config.json" ]; then
    tar czf - -C "$RUN" hf | split -b 15000000 - "$OUT/hf.tar.gz.part-"
fi
ls -l "$OUT"
exit "$status"
