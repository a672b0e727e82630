"""The GPU path side by side with plain PyTorch loops, in one run on one device.

1. The main job (Chaffard's mnist-pairs: 5 configurations x trials x epochs) through batchlab's CLI
   against the plain in-memory loop of benches/seed000.py on the same device; prints the ratio.
2. A CIFAR-10-shape workload: one epoch of ResNet-18 at batch 512 with random-crop and flip
   augmentation, timed three ways on the same images:
     batchlab:        train_run on the cifar10 loader (augmentation per epoch on the device, data resident);
     DataLoader loop: a Dataset whose __getitem__ pads, crops and flips one image with torch ops (no
                      torchvision here, so the transforms are written by hand, as a user would), a
                      DataLoader, each batch copied to the device;
     resident loop:   the same loop with the data on the device and the batch augmented there by hand.
   It prints images/s, the ratios and, on a GPU, the fraction of the card's dense bf16 peak (FLOPs
   counted from the convolutions' and linear layers' multiply-adds with forward hooks, x 3 for the
   forward and the two products of the backward, x 2 per multiply-add).

Without ``--cifar PATH`` the images are generated (write_fake_cifar: 50,000 on a GPU, 2,048 on a CPU
unless ``--images`` says otherwise); on a CPU the ResNet is narrowed (``--width``, default 0.25).
Each loop trains two epochs and the second is timed (the first pays for allocation, autotuning and
warm caches).

    python benches/gpu.py                      # CPU form: small sizes, a minute or two
    python benches/gpu.py --device cuda        # the GPU form (full sizes)
    python benches/gpu.py --device cuda --cifar ~/data/cifar-10-batches-py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).parent))
from seed000 import time_batchlab, time_plain

from batchlab.data import load_data
from batchlab.data.files import write_fake_cifar
from batchlab.models import build_model
from batchlab.spec import plan_study
from batchlab.training.loop import train_run

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets (SXM forms).
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def bf16_peak(device: str) -> tuple[str, float | None]:
    if device != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_properties(0).name
    return name, next((peak for key, peak in BF16_PEAK.items() if key in name), None)


def training_flops_per_image(model: nn.Module, shape: tuple[int, ...]) -> float:
    """2 FLOPs per multiply-add of every convolution and linear layer, x 3 for forward and backward."""
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs += out[0].numel() * k
        elif isinstance(module, nn.Linear):
            macs += out[0].numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape, device=next(model.parameters()).device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return 6.0 * macs


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str, precision: str):
    if precision == "fp32":
        return torch.autocast(device, enabled=False)
    return torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class CropFlip(Dataset):
    """What a user writes without torchvision: per image, pad by 4, crop 32x32 at random, flip half."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.pad(self.x[i], (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,)).tolist()
        image = image[:, dy : dy + 32, dx : dx + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.y[i]


def crop_flip_batch(x: torch.Tensor) -> torch.Tensor:
    """The same augmentation on a batch already on the device, vectorised by hand."""
    n = len(x)
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2, n), device=x.device)
    rows = (dy[:, None] + torch.arange(32, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(32, device=x.device))[:, None, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(3, device=x.device)[None, :, None, None],
                 rows, cols]
    return torch.where(torch.rand(n, 1, 1, 1, device=x.device) < 0.5, out.flip(-1), out)


def plain_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, device: str, precision: str,
                 resident: bool, workers: int) -> float:
    """Seconds of the second of two epochs of a plain loop (DataLoader, or data resident on the device)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    if resident:
        xd, yd = x.to(device), y.to(device)
    else:
        loader = DataLoader(CropFlip(x, y), batch_size=batch, shuffle=True, num_workers=workers,
                            pin_memory=device == "cuda", persistent_workers=workers > 0)
    seconds = 0.0
    for _ in range(2):
        model.train()
        synchronize(device)
        start = time.perf_counter()
        if resident:
            perm = torch.randperm(len(yd), device=device)
            batches = ((crop_flip_batch(xd[perm[i : i + batch]]), yd[perm[i : i + batch]])
                       for i in range(0, len(yd), batch))
        else:
            batches = loader
        for xb, yb in batches:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds


def cifar_workload(args: argparse.Namespace) -> None:
    device = args.device
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.cifar) if args.cifar else write_fake_cifar(Path(scratch) / "cifar", args.images,
                                                                      max(256, args.images // 10), seed=0, batches=5)
        doc = {"data": {"name": "cifar10", "path": str(folder), "normalize": "channel",
                        "augment": {"crop": 4, "flip": True}},
               "model": {"name": "resnet18", "width": args.width, "norm": "batch"},
               "train": {"epochs": 2, "batch_size": args.batch, "lr": 0.1, "device": device, "precision": args.precision,
                         "eval_batch_size": 1000,
                         "optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-4}}}
        config = plan_study(doc).runs[0].config
        data = load_data(config["data"])
        n = len(data.train.y)
        records: list[dict] = []
        train_run(config, lambda epoch, metrics: records.append(metrics), data=data)
        ours = records[2]["seconds"]
    model_args = ({"name": "resnet18", "width": args.width, "norm": "batch"}, (3, 32, 32), 10)
    torch.manual_seed(0)
    loader = plain_epochs(build_model(*model_args).to(device), data.train.x, data.train.y, args.batch, device,
                          args.precision, resident=False, workers=args.workers)
    torch.manual_seed(0)
    resident = plain_epochs(build_model(*model_args).to(device), data.train.x, data.train.y, args.batch, device,
                            args.precision, resident=True, workers=0)
    flops = training_flops_per_image(build_model(*model_args), (3, 32, 32))
    name, peak = bf16_peak(device)
    print(f"\nCIFAR-10 shape: {n} images 3x32x32 ({'files ' + str(args.cifar) if args.cifar else 'generated'}), "
          f"ResNet-18 width {args.width} ({flops / 1e9:.3f} GFLOP per training image), batch {args.batch}, "
          f"crop+flip, {args.precision}, on {name}; one epoch (the second of two)", flush=True)
    print(f"{'loop':34s} {'seconds':>8s} {'images/s':>10s} {'batchlab is':>12s} {'of bf16 peak':>13s}")
    for label, seconds in (("batchlab", ours), (f"plain DataLoader ({args.workers} workers)", loader),
                           ("plain, data on the device", resident)):
        rate = n / seconds
        share = f"{100 * rate * flops / peak:12.1f}%" if peak else f"{'n/a':>13s}"
        print(f"{label:34s} {seconds:8.2f} {rate:10.0f} {seconds / ours:11.2f}x {share}", flush=True)


def main_job(args: argparse.Namespace) -> None:
    ours, _, _ = time_batchlab(args.trials, args.epochs, vectorize="auto", device=args.device)
    plain = time_plain(args.trials, args.epochs, use_dataloader=False, device=args.device)
    print(f"main job (mnist-pairs, 5 configurations x {args.trials} trials x {args.epochs} epochs) on "
          f"{bf16_peak(args.device)[0]}:\n  batchlab (CLI, start-up included) {ours:7.1f} s\n"
          f"  plain in-memory loop              {plain:7.1f} s   batchlab is {plain / ours:.2f}x faster", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cifar", help="a folder of CIFAR-10 python batches (default: generated images)")
    parser.add_argument("--images", type=int, help="generated training images (default 50,000 on a GPU, 2,048 on a CPU)")
    parser.add_argument("--width", type=float, help="ResNet-18 width multiplier (default 1 on a GPU, 0.25 on a CPU)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="bf16")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default 4 on a GPU, 0 on a CPU)")
    parser.add_argument("--trials", type=int, help="main job trials (default 10 on a GPU, 1 on a CPU)")
    parser.add_argument("--epochs", type=int, help="main job epochs (default 80 on a GPU, 3 on a CPU)")
    parser.add_argument("--skip-main-job", action="store_true")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    args.images = args.images or (50_000 if gpu else 2048)
    args.width = args.width or (1.0 if gpu else 0.25)
    args.workers = args.workers if args.workers is not None else (4 if gpu else 0)
    args.trials = args.trials or (10 if gpu else 1)
    args.epochs = args.epochs or (80 if gpu else 3)
    print(f"torch {torch.__version__}, {bf16_peak(args.device)[0]}, {torch.get_num_threads()} CPU threads", flush=True)
    if not args.skip_main_job:
        main_job(args)
    cifar_workload(args)


if __name__ == "__main__":
    main()
