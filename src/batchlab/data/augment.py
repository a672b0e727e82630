"""Data augmentation on the device: random crop with zero padding, horizontal flip and cutout.

``data.augment = { crop = 4, flip = true, cutout = 8 }`` transforms the training images of every
epoch; evaluation sees the images as they are. Three choices, and why:

- **Once per epoch, on the gathered epoch tensor** (the loop gathers the shuffled training set once
  per epoch anyway): a handful of kernels per epoch whatever the batch size, where per-batch
  augmentation would add them to every step (on a GPU a small model's step is launch-bound), and
  an image's transformation in an epoch does not depend on how the epoch is cut into batches, so
  runs that differ only in batch size see the same augmented images for the same seed.
- **Vectorised, no per-image Python**: the padded images are read through one advanced-indexing
  gather of shifted windows, the flips are one ``torch.where`` on a random mask, the cutout squares
  one ``masked_fill`` with a broadcast mask.
- **Its own random stream, drawn on the CPU**: the offsets, flips and squares come from a
  ``torch.Generator`` seeded from the trial's seed (a stream apart from the batch order's, which it
  therefore never disturbs) and are drawn on the CPU, so a run augments identically on any device.

The images are normalised before they get here, so the zeros of the padding and of cutout are the
training set's mean (Krizhevsky et al. pad with zeros after subtracting the mean in the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

AUGMENT_STREAM = 0xA06  # mixed with the trial's seed: the augmentation's stream is not the batch order's


@dataclass(frozen=True)
class Draw:
    """The random choices for N images (CPU tensors; None where that transformation is off)."""

    dy: torch.Tensor | None  # crop offsets in 0..2·crop, [N]
    dx: torch.Tensor | None
    flip: torch.Tensor | None  # bool [N]
    cy: torch.Tensor | None  # cutout centres, [N]
    cx: torch.Tensor | None


def apply(x: torch.Tensor, draw: Draw, crop: int, cutout: int) -> torch.Tensor:
    """Images [N, C, H, W] cropped, flipped and cut out as ``draw`` says (a new tensor, on x's device,
    in x's memory format).

    Crop: image n is the H×W window at (dy[n], dx[n]) of the image zero-padded by ``crop`` pixels.
    Flip: mirrored left-right where flip[n]. Cutout: the rows cy-s//2 .. cy-s//2+s-1 and the same
    columns about cx (clipped at the border) set to zero, s = ``cutout``.
    """
    n, _, h, w = x.shape
    device = x.device
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    out = x
    if draw.dy is not None and draw.dx is not None:
        padded = F.pad(x, (crop, crop, crop, crop))
        rows = draw.dy.to(device)[:, None] + torch.arange(h, device=device)  # [N, H]
        cols = draw.dx.to(device)[:, None] + torch.arange(w, device=device)  # [N, W]
        images = torch.arange(n, device=device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=device)[None, :, None, None]
        out = padded[images, chans, rows[:, None, :, None], cols[:, None, None, :]]
    if draw.flip is not None:
        out = torch.where(draw.flip.to(device)[:, None, None, None], out.flip(-1), out)
    if draw.cy is not None and draw.cx is not None:
        top = draw.cy.to(device)[:, None] - cutout // 2
        left = draw.cx.to(device)[:, None] - cutout // 2
        r, c = torch.arange(h, device=device), torch.arange(w, device=device)
        in_rows = (r >= top) & (r < top + cutout)  # [N, H]
        in_cols = (c >= left) & (c < left + cutout)  # [N, W]
        out = out.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
    if out is x:
        out = x.clone()
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class Augmenter:
    """A trial's augmentation: ``augmenter(x)`` transforms one epoch's images [N, C, H, W]."""

    def __init__(self, crop: int, flip: bool, cutout: int, seed: int) -> None:
        self.crop, self.flip, self.cutout = crop, flip, cutout
        stream = np.random.SeedSequence([abs(int(seed)), AUGMENT_STREAM]).generate_state(1)[0]
        self.generator = torch.Generator().manual_seed(int(stream))

    def draw(self, n: int, h: int, w: int) -> Draw:
        """The next epoch's random choices, always in the same order: offsets, flips, centres."""
        g = self.generator

        def ints(high: int) -> torch.Tensor:
            return torch.randint(0, high, (n,), generator=g)

        dy, dx = (ints(2 * self.crop + 1), ints(2 * self.crop + 1)) if self.crop else (None, None)
        flip = torch.rand(n, generator=g) < 0.5 if self.flip else None
        cy, cx = (ints(h), ints(w)) if self.cutout else (None, None)
        return Draw(dy, dx, flip, cy, cx)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"data.augment needs images [N, C, H, W]; the data have shape {tuple(x.shape)}")
        return apply(x, self.draw(len(x), x.shape[2], x.shape[3]), self.crop, self.cutout)


def augmenter(spec: dict[str, Any] | None, seed: int) -> Augmenter | None:
    """The augmentation a resolved ``data.augment`` asks for, seeded by the trial; None when it is off."""
    if not spec or not (spec.get("crop") or spec.get("flip") or spec.get("cutout")):
        return None
    return Augmenter(int(spec.get("crop", 0)), bool(spec.get("flip", False)), int(spec.get("cutout", 0)), seed)
