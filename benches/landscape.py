"""Time a 51×51 filter-normalized loss landscape of the pair CNN (Chaffard) on its 1,000 training pairs.

Prints seconds and the ratio against evaluating the grid one point at a time the plain way
(copy the weights into the model, one forward pass over all 1,000 pairs), for:
  batchlab auto:    what `batchlab analyze landscape` does here (one point per pass on a CPU,
                    examples in chunks of 250, which stay in cache);
  batchlab vmap:    `points_per_pass = 51`, a whole grid row per vmapped forward pass.

    python benches/landscape.py              # the full 51×51 grid
    python benches/landscape.py --points 21  # a quicker look
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from batchlab.analysis import Minimum, analyses
from batchlab.analysis.landscape import filter_normalized_direction
from batchlab.gradients.measurement import model_at
from batchlab.spec import plan_study, read_document


def plain_grid(minimum: Minimum, points: int) -> float:
    """The usual hand-written loop: weights written point by point, one forward over the whole set."""
    model, loss, x, y = minimum.model, minimum.loss, minimum.data.train.x, minimum.data.train.y
    params = list(model.parameters())
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    gen = torch.Generator().manual_seed(0)
    d1, d2 = (filter_normalized_direction(params, gen) for _ in range(2))
    coords = np.linspace(-1, 1, points)
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        for a in coords:
            for b in coords:
                torch.nn.utils.vector_to_parameters(theta + a * d1 + b * d2, params)
                float(loss(model(x), y))  # float() waits for the device, as any use of the value would
        torch.nn.utils.vector_to_parameters(theta, params)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=51)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda (model and data are moved there)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    doc, _ = read_document("mnist-pairs")
    config = plan_study(doc).runs[0].config  # batch 20, lr 0.01
    model, loss, data = model_at(config, 5)
    if args.device != "cpu":
        from batchlab.data import DataSplits, Split

        model = model.to(args.device)
        moved = {k: Split(v.x.to(args.device), v.y.to(args.device)) if v is not None else None
                 for k, v in (("train", data.train), ("val", data.val), ("test", data.test))}
        data = DataSplits(moved["train"], moved["val"], moved["test"], data.num_classes)
    minimum = Minimum("bench", "bench", 0, 5, 20, model, loss, data)
    print(f"pair CNN (Chaffard) after 5 epochs at batch 20; {args.points}x{args.points} grid on 1,000 pairs, "
          f"{args.threads} thread(s), {args.device}")
    plain = plain_grid(minimum, args.points)
    print(f"{'plain loop (one point, one 1,000-pair pass)':48s} {plain:7.1f} s   1.00x")
    for label, per_pass in (("batchlab auto (one point per pass)", 0), ("batchlab vmap (51 points per pass)", 51)):
        start = time.perf_counter()
        analyses.build(analyses.resolve({"name": "landscape", "points": args.points, "points_per_pass": per_pass}),
                       minimum)
        if args.device != "cpu":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(f"{label:48s} {seconds:7.1f} s   {plain / seconds:.2f}x")


if __name__ == "__main__":
    main()
