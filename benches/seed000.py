"""Time the main job (seed 000: 5 configurations x trials x 80 epochs) against plain PyTorch loops.

Baselines do the same work (same data, model, optimizer, per-epoch evaluation of the full train and
test sets) written the usual ways, in one process with PyTorch's default threads:
  dataloader: DataLoader over a TensorDataset (shuffle=True), as most tutorials do;
  in-memory:  tensors sliced by hand, no DataLoader.
batchlab runs through its CLI (worker processes, one thread each), start-up included.

    python benches/seed000.py               # the full main job (~10 minutes here)
    python benches/seed000.py --trials 2    # a shorter comparison
    python benches/seed000.py --skip-baselines   # batchlab alone, without and with the default probes
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from batchlab.data import load_data
from batchlab.models import models
from batchlab.probes import DEFAULT_PROBES
from batchlab.spec import plan_study, read_document

CONFIGS = [  # (batch size, learning rate per epoch)
    (20, lambda e: 0.01), (100, lambda e: 0.01), (1000, lambda e: 0.01), (1000, lambda e: 0.1),
    (1000, lambda e: 0.01 * [1, 5, 5, 10, 10, 5, 5, 1][min(e // 10, 7)]),
]


def evaluate(model, batches) -> tuple[float, float]:
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            out = model(x)
            total += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return total / n, correct / n


def plain_run(data, batch_size, lr_at, epochs, seed, use_dataloader: bool) -> None:
    torch.manual_seed(seed)
    model = models.build(models.resolve("pair-cnn"), data.input_shape, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y, xt, yt = data.train.x, data.train.y, data.test.x, data.test.y
    if use_dataloader:
        train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
        eval_sets = [DataLoader(TensorDataset(x, y), batch_size=1000), DataLoader(TensorDataset(xt, yt), 1000)]
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(epoch)
        model.train()
        if use_dataloader:
            batches = train
        else:
            perm = torch.randperm(len(y))
            batches = ((x[perm[i:i + batch_size]], y[perm[i:i + batch_size]]) for i in range(0, len(y), batch_size))
        for xb, yb in batches:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        if use_dataloader:
            evaluate(model, eval_sets[0]), evaluate(model, eval_sets[1])
        else:
            evaluate(model, [(x, y)]), evaluate(model, [(xt, yt)])


def time_plain(trials: int, epochs: int, use_dataloader: bool) -> float:
    doc, _ = read_document("mnist-pairs")
    data = load_data(plan_study(doc).runs[0].config["data"])
    start = time.perf_counter()
    for batch_size, lr_at in CONFIGS:
        for seed in range(trials):
            plain_run(data, batch_size, lr_at, epochs, seed, use_dataloader)
    return time.perf_counter() - start


def time_batchlab(trials: int, epochs: int, probes: list[str] = ()) -> tuple[float, float]:
    """Wall time of the CLI, and the share of the runs' time their probes took (0 without probes)."""
    import batchlab

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "batchlab", "run", "mnist-pairs", "--out", out, "--quiet",
                        "--set", f"sweep.trials={trials}", "--set", f"train.epochs={epochs}",
                        *[arg for name in probes for arg in ("--set", f"probes.{name}=true")]],
                       check=True, capture_output=True)
        wall = time.perf_counter() - start
        epochs_table = batchlab.load(out).epochs
        spent = epochs_table[["seconds", "eval_seconds"]].to_numpy().sum()
        probed = epochs_table["probe_seconds"].sum() if "probe_seconds" in epochs_table else 0.0
        return wall, probed / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--skip-baselines", action="store_true", help="time batchlab only (with and without probes)")
    args = parser.parse_args()
    print(f"seed-000 main job: 5 configurations x {args.trials} trials x {args.epochs} epochs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads by default", flush=True)
    ours, _ = time_batchlab(args.trials, args.epochs)
    print(f"batchlab (CLI, all cores)      {ours:8.1f} s", flush=True)
    probed, share = time_batchlab(args.trials, args.epochs, DEFAULT_PROBES)
    print(f"batchlab + default probes      {probed:8.1f} s   +{100 * (probed / ours - 1):.1f}% wall time; "
          f"probes took {100 * share:.1f}% of training + evaluation time ({', '.join(DEFAULT_PROBES)})", flush=True)
    if args.skip_baselines:
        return
    memory = time_plain(args.trials, args.epochs, use_dataloader=False)
    print(f"plain in-memory loop           {memory:8.1f} s   batchlab is {memory / ours:.2f}x faster", flush=True)
    loader = time_plain(args.trials, args.epochs, use_dataloader=True)
    print(f"plain DataLoader loop          {loader:8.1f} s   batchlab is {loader / ours:.2f}x faster", flush=True)


if __name__ == "__main__":
    main()
