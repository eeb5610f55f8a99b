#!/usr/bin/env bash
# LeNet-5 on MNIST: one dense model, then (a) iterative channel/neuron pruning with fine-tuning
# (mnist_channels) and (b) few-shot pruning without fine-tuning (mnist_fewshot), every criterion
# starting from the same dense checkpoint. mnist_channels ranks per layer, so every criterion
# cuts each layer to the same width: the criteria are compared at equal FLOPs by construction.
#   LRP_PRUNE_DATA=../shared/data bash benchmarks/lenet_pruning.sh [OUT] [DATA]
set -euo pipefail
out=${1:-logs/lenet_pruning}
data=${2:-mnist}
seed=${SEED:-12345}
criteria=${CRITERIA:-lrp_signed,lrp,magnitude,taylor,gradient,random}
if [ ! -f "$out/dense/results.json" ]; then
  python train.py model=lenet5 data=$data trainer.max_epochs=6 seed=$seed \
    trainer.enable_progress_bar=false hydra.run.dir="$out/dense"
fi
ckpt="$out/dense/checkpoints/round_0/last.ckpt"
python train.py -m +experiment=mnist_fewshot data=$data pruner=$criteria seed=$seed ckpt_path="$ckpt" \
  trainer.enable_progress_bar=false hydra.sweep.dir="$out/fewshot"
python train.py -m +experiment=mnist_channels data=$data pruner=${CHANNEL_CRITERIA:-$criteria} seed=$seed \
  ckpt_path="$ckpt" trainer.enable_progress_bar=false hydra.sweep.dir="$out/channels"
