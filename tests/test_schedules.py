"""Learning-rate and batch-size schedules, scaling rules, warm-up and regimes against hand computation."""

from __future__ import annotations

import math

import pytest

from batchlab.batch_schedules import BatchContext, batch_schedules
from batchlab.errors import SpecError
from batchlab.schedules import ScheduleContext, schedules
from batchlab.spec import plan_study
from batchlab.training.timetable import Timetable


def schedule(spec: dict, lr: float = 0.01, epochs: int = 150):
    return schedules.build(schedules.resolve(spec), ScheduleContext(lr, epochs))


def train(**fields) -> dict:
    doc = {"data": {"name": "blobs"}, "model": {"name": "mlp"}, "train": fields}
    return plan_study(doc).runs[0].config["train"]


def test_piecewise_pyramid():
    pyramid = schedule({"name": "piecewise", "factors": [1, 5, 5, 10, 10, 5, 5, 1], "every": 10})
    assert [pyramid(e) for e in (0, 9, 10, 29, 30, 49, 50, 69, 70, 79, 200)] == [1, 1, 5, 5, 10, 10, 5, 5, 1, 1, 1]
    uneven = schedule({"name": "piecewise", "factors": [1, 0.1], "every": [2, 3]})
    assert [uneven(e) for e in range(6)] == [1, 1, 0.1, 0.1, 0.1, 0.1]


def test_step_decay_is_s_to_the_floor_of_k_over_n():
    decay = schedule({"name": "step", "decay": 0.375, "every": 20})
    assert [decay(k) for k in (0, 19, 20, 39, 40, 60)] == [1, 1, 0.375, 0.375, 0.375**2, 0.375**3]
    assert decay(19.99) == 1  # per-step time between epochs stays on the current step


def test_exponential_decay():
    decay = schedule({"name": "exponential", "rate": 0.1})
    assert [decay(k) for k in (0, 1, 10)] == pytest.approx([1, math.exp(-0.1), math.exp(-1)])


def test_time_based_decay_follows_seed_003_recursion():
    mu0, epochs = 0.5, 10  # a large μ0 so that d = μ0/N = 0.05 makes a visible decay
    decay = schedule({"name": "time-based"}, lr=mu0, epochs=epochs)
    d, mu = mu0 / epochs, [mu0]
    for k in range(12):
        mu.append(mu[-1] / (1 + k * d))  # μ(k+1) = μ(k)/(1 + k·d)
    assert [mu0 * decay(k) for k in range(13)] == pytest.approx(mu, rel=1e-12)
    assert mu0 * decay(2.5) == pytest.approx(math.sqrt(mu[2] * mu[3]))  # geometric between epochs
    explicit = schedule({"name": "time-based", "decay": 0.2})
    assert explicit(3) == pytest.approx(1 / (1 * 1.2 * 1.4))


def test_cosine_and_its_floor():
    cos = schedule({"name": "cosine"}, epochs=10)
    assert [cos(0), cos(5), cos(10), cos(20)] == pytest.approx([1, 0.5, 0, 0])
    floor = schedule({"name": "cosine", "epochs": 4, "min_factor": 0.2})
    assert floor(2) == pytest.approx(0.6)


def test_plateau_reduces_after_patience_and_cools_down():
    plateau = schedule({"name": "plateau", "metric": "val_loss", "factor": 0.5, "patience": 2, "cooldown": 1})
    factors = []
    for loss in [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.94, 0.8]:
        plateau.observe({"val_loss": loss})
        factors.append(plateau(0))
    # best 0.9 at step 2; two epochs without improvement -> halve; cooldown 1 epoch; two more -> halve
    assert factors == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    accuracy = schedule({"name": "plateau", "metric": "val_acc", "factor": 0.1, "patience": 1})
    accuracy.observe({"val_acc": 0.5})
    accuracy.observe({"val_acc": 0.6})
    assert accuracy(0) == 1  # higher accuracy is improvement
    accuracy.observe({"val_acc": 0.6})
    assert accuracy(0) == pytest.approx(0.1)


def test_step_ascent_is_seed_003_formula_capped_at_the_data():
    ascent = batch_schedules.build(batch_schedules.resolve({"name": "step-ascent", "growth": 2, "every": 20}),
                                   BatchContext(16, n_train=3000))
    assert [ascent(k, 1.0)[0] for k in (0, 19, 20, 40, 60, 80, 100, 120, 200)] == [
        16, 16, 32, 64, 128, 256, 512, 1024, 3000]
    odd = batch_schedules.build(batch_schedules.resolve({"name": "step-ascent", "growth": 1.5, "every": 1}),
                                BatchContext(10))
    assert [odd(k, 1.0)[0] for k in range(4)] == [10, 15, 22, 33]  # int(B0·s^k), truncated


def test_switch_changes_batch_and_rate_at_the_epoch():
    switch = batch_schedules.build(batch_schedules.resolve(
        {"name": "switch", "at_epoch": 5, "batch_size": 32, "lr_factor": 2.0}), BatchContext(1024, 5000))
    assert [switch(k, 1.0) for k in (0, 4, 5, 9)] == [(1024, 1.0), (1024, 1.0), (32, 2.0), (32, 2.0)]


def test_smith_keeps_lr_over_batch_constant_until_the_cap():
    tt = Timetable(train(batch_size=100, lr=0.1, epochs=40, schedule={"name": "step", "decay": 0.2, "every": 10},
                         batch_schedule={"name": "smith", "max_batch_size": 5000}), n_train=60000)
    batches = [tt.batch_size(k) for k in (0, 10, 20, 30)]
    rates = [tt.lr(k) for k in (0, 10, 20, 30)]
    assert batches == [100, 500, 2500, 5000]  # 100 / 0.2^g, capped at 5000
    assert rates[:3] == pytest.approx([0.1, 0.1, 0.1])  # the decay went to the batch
    assert rates[3] == pytest.approx(0.1 * 0.2**3 * 50)  # past the cap the rest goes to the rate
    assert [r / b for r, b in zip(rates, batches, strict=True)] == pytest.approx(
        [0.1 * 0.2**g / 100 for g in range(4)])  # same noise scale lr/B as the plain decay


@pytest.mark.parametrize("rule, factor", [("none", 1.0), ("linear", 50.0), ("sqrt", math.sqrt(50))])
def test_lr_scaling_rules(rule, factor):
    tt = Timetable(train(batch_size=1000, lr=0.01, lr_scaling=rule, base_batch_size=20), n_train=1000)
    assert tt.lr(0) == pytest.approx(0.01 * factor)


def test_warmup_ramps_per_step_from_unscaled_to_scaled_rate():
    tt = Timetable(train(batch_size=100, lr=0.01, lr_scaling="linear", base_batch_size=20, warmup_epochs=2,
                         schedule={"name": "step", "decay": 0.1, "every": 3}), n_train=1000)
    steps = tt.steps(0)
    assert steps == 10
    # Goyal et al.: start at η, rise by a constant amount each step, reach kη after the warm-up
    expected = [0.01 + (0.05 - 0.01) * (e + i / steps) / 2 for e in range(2) for i in range(steps)]
    got = [tt.lr(e, i, steps) for e in range(2) for i in range(steps)]
    assert got == pytest.approx(expected)
    assert tt.lr(2, 0, steps) == pytest.approx(0.05) and tt.lr(3, 0, steps) == pytest.approx(0.005)
    no_scaling = Timetable(train(lr=0.1, warmup_epochs=1), n_train=100)
    assert [no_scaling.lr(0, i, 5) for i in range(5)] == pytest.approx([0, 0.02, 0.04, 0.06, 0.08])
    explicit = Timetable(train(lr=0.1, warmup_epochs=1, warmup_start=0.5), n_train=100)
    assert explicit.lr(0, 0, 5) == pytest.approx(0.05)


def test_per_step_schedule_moves_within_an_epoch():
    per_epoch = Timetable(train(lr=1.0, schedule={"name": "exponential", "rate": 1.0}), n_train=100)
    per_step = Timetable(train(lr=1.0, schedule={"name": "exponential", "rate": 1.0}, lr_update="step"), n_train=100)
    assert per_epoch.lr(1, 2, 4) == pytest.approx(math.exp(-1))
    assert per_step.lr(1, 2, 4) == pytest.approx(math.exp(-1.5))


def test_same_updates_regime_stretches_epochs_and_milestones():
    tt = Timetable(train(batch_size=100, base_batch_size=20, epochs=10, regime="same-updates",
                         schedule={"name": "step", "decay": 0.1, "every": 5}), n_train=1000)
    assert tt.epochs == 50 and tt.steps(0) * tt.epochs == 10 * 50  # as many updates as the batch-20 run
    assert tt.lr(24) == pytest.approx(0.01) and tt.lr(25) == pytest.approx(0.001)  # milestone 5 → 25
    base = Timetable(train(batch_size=20, base_batch_size=20, epochs=10, regime="same-updates"), n_train=1000)
    assert base.epochs == 10


@pytest.mark.parametrize("fields, message", [
    ({"lr_scaling": "linear"}, "lr_scaling = 'linear' needs train.base_batch_size"),
    ({"regime": "same-updates"}, "regime = 'same-updates' needs train.base_batch_size"),
    ({"batch_schedule": {"name": "smith", "max_batch_size": 0}}, "max_batch_size"),
    ({"batch_schedule": "grow"}, "unknown batch schedule 'grow'"),
    ({"schedule": {"name": "step", "decay": 0}}, "decay"),
    ({"accumulate": 64, "batch_size": 32}, "more micro-batches than the batch has examples"),
    ({"warmup_start": 2}, "warmup_start"),
])
def test_bad_remedy_fields_are_one_line_errors(fields, message):
    with pytest.raises(SpecError, match=message) as err:
        train(**fields)
    assert "\n" not in str(err.value)
