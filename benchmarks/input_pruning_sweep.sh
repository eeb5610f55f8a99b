#!/usr/bin/env bash
# Input pruning on full MNIST, MLP 784-300-100-10: LRP vs variance vs random at k = 50, 100, 196
# kept pixels, 3 seeds. The dense model of each seed is trained once and every pruning job starts
# from its checkpoint (ckpt_path=...), so the criteria are compared on the same dense network.
#   LRP_PRUNE_DATA=../shared/data bash benchmarks/input_pruning_sweep.sh [OUT]
# Writes OUT/dense_s<seed>/ and OUT/sweep_s<seed>/ (with summary.csv and acc_vs_flops.png).
set -euo pipefail
out=${1:-logs/input_pruning}
seeds=${SEEDS:-"1 2 3"}
run_seed() {
  s=$1
  if [ ! -f "$out/dense_s$s/results.json" ]; then
    # the dense model as experiment/mnist_prune trains it (8 epochs, constant lr)
    python train.py model=mlp trainer.max_epochs=8 seed=$s trainer.enable_progress_bar=false \
      hydra.run.dir="$out/dense_s$s"
  fi
  python train.py -m +experiment=mnist_prune pruner=lrp,variance,random pruner.keep=50,100,196 \
    seed=$s ckpt_path="$out/dense_s$s/checkpoints/round_0/last.ckpt" \
    trainer.enable_progress_bar=false hydra.sweep.dir="$out/sweep_s$s"
}
# PARALLEL=1 runs the seeds side by side, one thread each (better throughput on a small CPU)
if [ "${PARALLEL:-0}" = 1 ]; then
  for s in $seeds; do OMP_NUM_THREADS=1 run_seed "$s" > "$out.s$s.log" 2>&1 & done
  wait
else
  for s in $seeds; do run_seed "$s"; done
fi
python benchmarks/summarize_sweeps.py "$out"/sweep_s*
