"""Augmentation on the device: each image is the crop/flip/cutout of its original computed by hand,
the same seed gives the same epochs, off changes nothing, and the settings record it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from batchlab.data.augment import Augmenter, Draw, apply, augmenter
from batchlab.spec import plan_study
from batchlab.training.loop import train_run

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is checked on a GPU")
IMAGES = {"data": {"name": "digits"}, "model": {"name": "pair-cnn", "hidden": [16]},
          "train": {"epochs": 2, "batch_size": 64, "lr": 0.05}}


def by_hand(image: torch.Tensor, crop: int, dy: int, dx: int, flip: bool, cutout: int, cy: int, cx: int
            ) -> torch.Tensor:
    """One image through the three transformations, with plain slicing and loops."""
    c, h, w = image.shape
    out = image
    if crop:
        padded = torch.zeros(c, h + 2 * crop, w + 2 * crop)
        padded[:, crop : crop + h, crop : crop + w] = image
        out = padded[:, dy : dy + h, dx : dx + w]
    if flip:
        out = out[:, :, list(range(w - 1, -1, -1))]
    out = out.clone()
    if cutout:
        for r in range(h):
            for col in range(w):
                if cy - cutout // 2 <= r < cy - cutout // 2 + cutout and cx - cutout // 2 <= col < cx - cutout // 2 + cutout:
                    out[:, r, col] = 0.0
    return out


@pytest.mark.parametrize("crop, flip, cutout", [(4, False, 0), (0, True, 0), (0, False, 5), (3, True, 4)])
def test_every_image_is_its_crop_flip_and_cutout(crop, flip, cutout):
    x = torch.randn(12, 3, 10, 9)
    aug = Augmenter(crop, flip, cutout, seed=3)
    draw = aug.draw(12, 10, 9)
    out = apply(x, draw, crop, cutout)
    for i in range(12):
        dy = int(draw.dy[i]) if crop else 0
        dx = int(draw.dx[i]) if crop else 0
        cy = int(draw.cy[i]) if cutout else 0
        cx = int(draw.cx[i]) if cutout else 0
        expected = by_hand(x[i], crop, dy, dx, bool(draw.flip[i]) if flip else False, cutout, cy, cx)
        assert torch.equal(out[i], expected), i
    if crop:  # the offsets cover 0..2·crop: some images really move, some do not
        assert int(draw.dy.min()) >= 0 and int(draw.dy.max()) <= 2 * crop
        assert not torch.equal(out, x)
    if flip:
        assert 0 < int(draw.flip.sum()) < 12


def test_a_known_shift_moves_the_image_and_pads_with_zeros():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    draw = Draw(torch.tensor([0]), torch.tensor([2]), None, None, None)  # window at row 0, column 2 of the padding
    out = apply(x, draw, crop=1, cutout=0)
    assert torch.equal(out[0, 0], F.pad(x, (1, 1, 1, 1))[0, 0, 0:4, 2:6])
    assert torch.equal(out[0, 0, 0], torch.zeros(4))  # the top row is padding
    assert torch.equal(out[0, 0, 1], torch.tensor([1.0, 2.0, 3.0, 0.0]))


def test_the_same_seed_gives_the_same_epochs_and_keeps_the_layout():
    x = torch.randn(20, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    a, b, c = (Augmenter(2, True, 3, seed) for seed in (7, 7, 8))
    first, again, other = a(x), b(x), c(x)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(a(x), first)  # the next epoch draws anew
    assert first.is_contiguous(memory_format=torch.channels_last)
    assert augmenter({"crop": 0, "flip": False, "cutout": 0}, 0) is None and augmenter(None, 0) is None


def records(config: dict) -> list[dict]:
    out: list[dict] = []
    train_run(config, lambda epoch, metrics: out.append({k: v for k, v in metrics.items() if "seconds" not in k}))
    return out


def test_training_off_is_unchanged_and_on_is_deterministic():
    off = plan_study(IMAGES).runs[0].config
    assert off["data"]["augment"] == {"crop": 0, "flip": False, "cutout": 0}
    before = {**off, "data": {k: v for k, v in off["data"].items() if k != "augment"}}  # as stored before the field
    assert records(before) == records(off)
    on = plan_study({**IMAGES, "data": {**IMAGES["data"], "augment": {"crop": 2, "flip": True}}}).runs[0].config
    augmented = records(on)
    assert augmented == records(on)  # the same seed: the same numbers
    assert augmented[-1]["train_loss"] != records(off)[-1]["train_loss"]
    assert augmented[0] == records(off)[0]  # evaluation sees the images as they are


def test_the_resolved_configuration_and_the_settings_table_list_it(tmp_path, run_quietly):
    from batchlab.report.data import prepare
    from batchlab.report.tables import settings_table
    from batchlab.results.store import load

    doc = {**IMAGES, "data": {**IMAGES["data"], "subset": 200, "augment": {"flip": True, "cutout": 4}},
           "train": {**IMAGES["train"], "epochs": 1}}
    run_quietly(doc, tmp_path / "s")
    results = load(tmp_path / "s")
    rows = dict(settings_table(prepare(results, doc)).rows)
    assert rows["data.augment.flip"] == "True" and rows["data.augment.cutout"] == "4"


def test_augmentation_refuses_inputs_that_are_not_images():
    with pytest.raises(ValueError, match="images"):
        Augmenter(2, True, 0, 0)(torch.randn(5, 10))


@cuda
def test_the_gpu_augments_exactly_as_the_cpu():
    x = torch.randn(30, 3, 16, 16)
    assert torch.equal(Augmenter(4, True, 6, 1)(x.cuda()).cpu(), Augmenter(4, True, 6, 1)(x))
