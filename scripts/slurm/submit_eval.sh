#!/usr/bin/env bash
# Submits a sharded `echo4o eval` to SLURM: an N-task GPU job array, then the merge and scoring
# once every task succeeded.
#
#   BENCH=geneval-pp MODEL=/shared/Echo-4o OUT=/shared/eval/geneval-pp scripts/slurm/submit_eval.sh 8
#
# Environment: BENCH, MODEL, OUT (required); SEED (42), SAMPLES, DATA (omnicontext), JUDGE_URL,
# ECHO4O (the binary, default `echo4o` on PATH). Judged benchmarks read OPENAI_API_KEY in the
# merge job's environment.
set -euo pipefail
N=${1:?usage: submit_eval.sh N_SHARDS}
: "${BENCH:?}" "${MODEL:?}" "${OUT:?}"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
array=$(sbatch --parsable --array="0-$(( N - 1 ))" --export=ALL "$here/eval_shard.sbatch")
merge=$(sbatch --parsable --dependency="afterok:$array" --export=ALL "$here/merge.sbatch")
echo "shards: job $array (0-$(( N - 1 ))), merge: job $merge; results in $OUT/merged"
