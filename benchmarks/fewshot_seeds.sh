#!/usr/bin/env bash
# Few-shot pruning without fine-tuning ("pruning by explaining"), LeNet-5, on MNIST and
# Fashion-MNIST, over seeds 12345 1 2: one dense model per dataset and seed, then from that same
# checkpoint the baselines, the experiment's LRP criterion (pruner=lrp_conserved explaining the
# log-probability), the layer-normalised LRP criteria explaining the margin and the logit
# alone, and absLRP.
#   LRP_PRUNE_DATA=../shared/data bash benchmarks/fewshot_seeds.sh [OUT]
# Then: python benchmarks/summarize_sweeps.py OUT/mnist/*_s* (and OUT/fashion_mnist/*_s*).
set -euo pipefail
out=${1:-logs/fewshot}
seeds=${SEEDS:-"12345 1 2"}
criteria=${CRITERIA:-magnitude,taylor,gradient,random}
common="trainer.enable_progress_bar=false"
for data in ${DATASETS:-mnist fashion_mnist}; do
  for s in $seeds; do
    dense="$out/$data/dense_s$s"
    if [ ! -f "$dense/results.json" ]; then
      python train.py model=lenet5 data=$data trainer.max_epochs=6 seed=$s $common \
        hydra.run.dir="$dense"
    fi
    ckpt="$dense/checkpoints/round_0/last.ckpt"
    python train.py -m +experiment=mnist_fewshot data=$data pruner=$criteria seed=$s \
      ckpt_path="$ckpt" $common hydra.sweep.dir="$out/$data/sweep_s$s"
    python train.py -m +experiment=mnist_fewshot data=$data pruner=lrp_conserved seed=$s \
      ckpt_path="$ckpt" $common hydra.sweep.dir="$out/$data/conserved_s$s"
    python train.py -m +experiment=mnist_fewshot data=$data pruner=lrp_signed,lrp \
      relevance.output=margin seed=$s ckpt_path="$ckpt" $common \
      hydra.sweep.dir="$out/$data/margin_s$s"
    python train.py -m +experiment=mnist_fewshot data=$data pruner=lrp_signed,lrp \
      relevance.output=logit seed=$s ckpt_path="$ckpt" $common \
      hydra.sweep.dir="$out/$data/logit_s$s"
    python train.py -m +experiment=mnist_fewshot data=$data lrp=abslrp pruner=lrp \
      pruner.criterion.normalize=l2 relevance.output=logit seed=$s ckpt_path="$ckpt" $common \
      hydra.sweep.dir="$out/$data/abslrp_s$s"
  done
done
