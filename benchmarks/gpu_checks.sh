#!/usr/bin/env bash
# Everything that needs a GPU, in one command (CI has none): the CUDA tests, the LRP speed
# benchmark on CUDA (CNNs and the ViT), the dataset-level explain pass on a GPU Trainer, the
# flagship run on the GPU in float32 and bf16-mixed, and the ViT pruning runs on the GPU. Logs and the runs' results.json go to $OUT (default
# logs/gpu); the runs themselves to logs/gpu/runs. The benchmarks record their runs in
# benchmarks/summaries/ (then: python benchmarks/make_pages.py).
#
#   LRP_PRUNE_DATA=../shared/data bash benchmarks/gpu_checks.sh
set -uo pipefail
OUT=${OUT:-logs/gpu}
DATA=${LRP_PRUNE_DATA:-../shared/data}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 LRP_PRUNE_DATA=$DATA
TIME=$(command -v /usr/bin/time >/dev/null && echo "/usr/bin/time -v")
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    python -m pytest -q -p no:cacheprovider --durations=5 tests/lrp/test_cuda.py \
    tests/pruning/test_pruner.py tests/evaluation/test_cost.py -k "cuda or gpu or latency"
} 2>&1 | tee "$OUT/tests.log"
python benchmarks/lrp_speed.py --device cuda --threads 8 --repeats 5 --presets all --captum \
    --summary --run cuda-b128 2>&1 | tee "$OUT/lrp_speed.log"
# batch 128 leaves an H100 idle between kernel launches; at 1024 VGG11 keeps it busy
python benchmarks/lrp_speed.py --device cuda --threads 8 --repeats 5 --batch 1024 \
    --models lenet5,vgg11 --summary --run cuda-b1024 2>&1 | tee "$OUT/lrp_speed_b1024.log"
python benchmarks/lrp_speed.py --device cuda --threads 8 --repeats 5 --models vit \
    --summary --run cuda-b128-vit 2>&1 | tee "$OUT/lrp_speed_vit.log"
for run in "mlp epsilon" "lenet5 epsilon_plus"; do
    set -- $run
    python benchmarks/explain_speed.py --device gpu --data-root "$DATA" --model "$1" \
        --composite "$2" --repeats 5 --summary 2>&1 | grep -v Warning | tee -a "$OUT/explain.log"
done
for precision in 32-true bf16-mixed; do
    $TIME python train.py +experiment=mnist_prune trainer.accelerator=gpu \
        trainer.precision=$precision hydra.run.dir="logs/gpu/runs/$precision" \
        > "$OUT/flagship_$precision.log" 2>&1
    cp "logs/gpu/runs/$precision/results.json" "$OUT/results_$precision.json"
    grep -E "Elapsed|Maximum resident" "$OUT/flagship_$precision.log" | tail -12
done
# the ViT: dense training, then heads and MLP neurons cut and fine-tuned, on the GPU
$TIME python train.py +experiment=mnist_vit_prune trainer.accelerator=gpu \
    hydra.run.dir="logs/gpu/runs/vit_prune" > "$OUT/vit_prune.log" 2>&1
cp "logs/gpu/runs/vit_prune/results.json" "$OUT/results_vit_prune.json"
grep -E "Elapsed|Maximum resident" "$OUT/vit_prune.log" | tail -2
