#!/usr/bin/env bash
# Input pruning on full MNIST, MLP 784-300-100-10: LRP vs variance vs random at k = 50, 100, 196
# kept pixels, 3 seeds. The dense model of each seed is trained once and every pruning job starts
# from its checkpoint (ckpt_path=...), so the criteria are compared on the same dense network.
#   LRP_PRUNE_DATA=../shared/data bash benchmarks/input_pruning_sweep.sh [OUT]
# Writes OUT/dense_s<seed>/ and OUT/sweep_s<seed>/ (with summary.csv and acc_vs_flops.png).
set -euo pipefail
out=${1:-logs/input_pruning}
seeds=${SEEDS:-"1 2 3"}
for s in $seeds; do
  if [ ! -f "$out/dense_s$s/results.json" ]; then
    python train.py model=mlp trainer.max_epochs=8 seed=$s trainer.enable_progress_bar=false \
      hydra.run.dir="$out/dense_s$s"
  fi
  python train.py -m +experiment=mnist_prune pruner=lrp,variance,random pruner.keep=50,100,196 \
    seed=$s ckpt_path="$out/dense_s$s/checkpoints/round_0/last.ckpt" \
    trainer.enable_progress_bar=false hydra.sweep.dir="$out/sweep_s$s"
done
python benchmarks/summarize_sweeps.py "$out"/sweep_s*
