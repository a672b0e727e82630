"""Time the main job (Chaffard's digit pairs: 5 configurations x trials x 80 epochs) against plain PyTorch loops.

Baselines do the same work (same data, model, optimizer, per-epoch evaluation of the full train and
test sets) written the usual ways, in one process with PyTorch's default threads:
  dataloader: DataLoader over a TensorDataset (shuffle=True), as most tutorials do;
  in-memory:  tensors sliced by hand, no DataLoader.
batchlab runs through its CLI (worker processes, one thread each), start-up included, without
writing the report (the loops draw no figures either).

The arithmetic limit is the study's floating-point work (forward and backward of every training
step, forward of every evaluation, counted by torch.utils.flop_counter) divided by this machine's
float32 matrix-multiply rate on all cores; per batch size, each run's measured compute time is
compared with its own single-core limit.

    python benches/seed000.py               # the full main job (~10 minutes here)
    python benches/seed000.py --trials 2    # a shorter comparison
    python benches/seed000.py --skip-baselines   # batchlab alone, against the arithmetic limit
    python benches/seed000.py --device cuda      # the same comparison on a GPU (data and models on it)

On a GPU the "limit" is the float32 matrix-multiply rate of the card (TF32 off, as batchlab trains):
the pair CNN is far too small to fill it, so there the numbers show launch overhead, not arithmetic.
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


def evaluate(model, batches, device: str) -> tuple[float, float]:
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            x, y = x.to(device), y.to(device)  # a no-op for tensors already there
            out = model(x)
            total += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return total / n, correct / n


def plain_run(data, batch_size, lr_at, epochs, seed, use_dataloader: bool, device: str) -> None:
    """The DataLoader loop keeps the data in host memory and moves each batch to the device, as
    tutorials do; the in-memory loop puts the data on the device once."""
    torch.manual_seed(seed)
    model = models.build(models.resolve("pair-cnn"), data.input_shape, 2).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y, xt, yt = data.train.x, data.train.y, data.test.x, data.test.y
    if use_dataloader:
        train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
        eval_sets = [DataLoader(TensorDataset(x, y), batch_size=1000), DataLoader(TensorDataset(xt, yt), 1000)]
    else:
        x, y, xt, yt = (t.to(device) for t in (x, y, xt, yt))
        eval_sets = [[(x, y)], [(xt, yt)]]
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(epoch)
        model.train()
        if use_dataloader:
            batches = train
        else:
            perm = torch.randperm(len(y), device=device)
            batches = ((x[perm[i:i + batch_size]], y[perm[i:i + batch_size]]) for i in range(0, len(y), batch_size))
        for xb, yb in batches:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        evaluate(model, eval_sets[0], device), evaluate(model, eval_sets[1], device)


def time_plain(trials: int, epochs: int, use_dataloader: bool, device: str) -> float:
    doc, _ = read_document("mnist-pairs")
    data = load_data(plan_study(doc).runs[0].config["data"])
    start = time.perf_counter()
    for batch_size, lr_at in CONFIGS:
        for seed in range(trials):
            plain_run(data, batch_size, lr_at, epochs, seed, use_dataloader, device)
    return time.perf_counter() - start


def time_batchlab(trials: int, epochs: int, probes: list[str] = (), vectorize: str = "auto", device: str = "cpu"
                  ) -> tuple[float, float, object]:
    """Wall time of the CLI, the share of the runs' time their probes took (0 without probes), and
    the runs table."""
    import batchlab

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "batchlab", "run", "mnist-pairs", "--out", out, "--quiet", "--no-report",
                        "--vectorize", vectorize, "--device", device,
                        "--set", f"sweep.trials={trials}", "--set", f"train.epochs={epochs}",
                        *[arg for name in probes for arg in ("--set", f"probes.{name}=true")]],
                       check=True, capture_output=True)
        wall = time.perf_counter() - start
        results = batchlab.load(out)
        failed = results.runs[results.runs["status"] == "failed"]
        if len(failed):  # a failed run ends early and would look fast
            raise SystemExit(f"{len(failed)} runs failed: {failed['error'].iloc[0]}")
        epochs_table = results.epochs
        spent = epochs_table[["seconds", "eval_seconds"]].to_numpy().sum()
        probed = epochs_table["probe_seconds"].sum() if "probe_seconds" in epochs_table else 0.0
        return wall, probed / spent, results.runs


def matmul_rate(threads: int, device: str = "cpu", rounds: int = 7) -> float:
    """float32 FLOP/s of a square matrix product with this many CPU threads (or on the GPU): the
    best of several rounds, since a shared machine's rate varies by a third from one second to the
    next and the limit is what the hardware can do, not what a noisy moment gave."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    size = 1024 if device == "cpu" else 8192  # a GPU needs a large product to reach its rate
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    best, n = 0.0, 10
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            a @ b
        synchronize(device)
        best = max(best, n * 2 * size**3 / (time.perf_counter() - start))
    torch.set_num_threads(before)
    return best


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def study_flops(epochs: int) -> dict[int, float]:
    """FLOPs of one run, by batch size: every training step (forward + backward) and every
    evaluation of the train and test sets (forward, epoch 0 included)."""
    from torch.utils.flop_counter import FlopCounterMode

    doc, _ = read_document("mnist-pairs")
    data = load_data(plan_study(doc).runs[0].config["data"])
    model = models.build(models.resolve("pair-cnn"), data.input_shape, 2)
    x, y = data.train.x, data.train.y
    with FlopCounterMode(display=False) as train_count:
        F.cross_entropy(model(x), y).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as eval_count:
        model(x)
    per_epoch_train = train_count.get_total_flops()  # the whole training set once: any batch size
    per_eval = eval_count.get_total_flops() * (len(y) + len(data.test.y)) / len(y)
    return {b: epochs * per_epoch_train + (epochs + 1) * per_eval for b, _ in CONFIGS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--skip-baselines", action="store_true", help="time batchlab only (no probes, no plain loops)")
    parser.add_argument("--vectorize", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    device = args.device
    where = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} threads by default"
    print(f"main job (mnist-pairs): 5 configurations x {args.trials} trials x {args.epochs} epochs, "
          f"torch {torch.__version__}, {where}", flush=True)
    cores = torch.get_num_threads()
    all_cores, one_core = matmul_rate(cores, device), matmul_rate(1)
    flops = study_flops(args.epochs)
    total = sum(flops[b] for b, _ in CONFIGS) * args.trials
    limit = total / all_cores
    print(f"arithmetic limit: {total / 1e12:.2f} TFLOP at {all_cores / 1e9:.0f} GFLOP/s "
          f"({device if device == 'cuda' else f'{cores} cores'}; {one_core / 1e9:.0f} GFLOP/s on one core) "
          f"= {limit:8.1f} s", flush=True)
    ours, _, runs = time_batchlab(args.trials, args.epochs, vectorize=args.vectorize, device=device)
    print(f"batchlab (CLI, --device {device}, --vectorize {args.vectorize})  {ours:8.1f} s   "
          f"{ours / limit:.2f}x the limit", flush=True)
    for batch in sorted({b for b, _ in CONFIGS}):
        if device == "cuda":
            break  # one GPU runs them all: a per-run single-core limit means nothing there
        mine = runs[runs["train.batch_size"] == batch]
        spent = (mine["train_seconds"] + mine["eval_seconds"]).mean()
        print(f"  batch {batch:5d}: {spent:6.2f} s of compute per run, single-core limit "
              f"{flops[batch] / one_core:5.2f} s: {spent / (flops[batch] / one_core):.2f}x", flush=True)
    if args.skip_baselines:
        return
    probed, share, _ = time_batchlab(args.trials, args.epochs, DEFAULT_PROBES, args.vectorize, device)
    print(f"batchlab + default probes      {probed:8.1f} s   +{100 * (probed / ours - 1):.1f}% wall time; "
          f"probes took {100 * share:.1f}% of training + evaluation time ({', '.join(DEFAULT_PROBES)})", flush=True)
    memory = time_plain(args.trials, args.epochs, use_dataloader=False, device=device)
    print(f"plain in-memory loop           {memory:8.1f} s   batchlab is {memory / ours:.2f}x faster", flush=True)
    loader = time_plain(args.trials, args.epochs, use_dataloader=True, device=device)
    print(f"plain DataLoader loop          {loader:8.1f} s   batchlab is {loader / ours:.2f}x faster", flush=True)


if __name__ == "__main__":
    main()
