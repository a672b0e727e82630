"""The report's figures checked on the figure objects: a colour per configuration, legends with whole
labels in order, at least two labelled ticks on every log axis, whole-number epochs, hollow points
for targets not every trial reached, and captions that are whole sentences. Then what a report
says beyond its figures: settings, environment, times, memory and a quick form's warning."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from batchlab.report.data import prepare
from batchlab.report.figures import caption, figures
from batchlab.results.labels import config_labels
from batchlab.results.store import Results

matplotlib.use("Agg")

PYRAMID = "piecewise(factors=[1.0, 5.0, 5.0, 10.0, 10.0, 5.0, 5.0, 1.0], every=10)"
CONFIGS = [  # Chaffard's design: three full-batch variants share batch size 1000
    ("c1000p", 1000, 0.01, PYRAMID), ("c20", 20, 0.01, "constant"), ("c100", 100, 0.01, "constant"),
    ("c1000", 1000, 0.01, "constant"), ("c1000h", 1000, 0.1, "constant"),
]


def results() -> Results:
    rng = np.random.default_rng(0)
    runs, epochs = [], []
    for config_id, batch, lr, schedule in CONFIGS:
        for seed in range(3):
            run_id = f"{config_id}-{seed}"
            reached = batch < 1000 or seed == 0  # one trial of three reaches the target at batch 1000
            runs.append({"run_id": run_id, "config_id": config_id, "seed": seed, "status": "finished",
                         "train.batch_size": batch, "train.lr": lr, "train.schedule": schedule, "data.name": "mnist",
                         "train.epochs": 6, "train.target.metric": "test_acc", "train.target.value": 0.75,
                         "target_epoch": 3 if reached else None, "target_step": 3 * 1000 / batch if reached else None,
                         "train_seconds": 6 * 2000 / batch * (1 + 0.1 * seed), "eval_seconds": 0.1, "epochs": 6,
                         "final_test_acc": 0.8 - 0.05 * np.log10(batch) + 0.01 * seed, "final_train_acc": 0.9})
            for epoch in range(7):
                warm = min(1.0, (epoch + 0.5) / 2)
                epochs.append({"run_id": run_id, "config_id": config_id, "seed": seed, "epoch": epoch,
                               "train_loss": 2 / (epoch + 1) + rng.random() * 0.1, "test_loss": 2.2 / (epoch + 1),
                               "train_acc": 0.1 + 0.1 * epoch, "test_acc": 0.1 + 0.09 * epoch,
                               "seconds": 2000 / batch * 0.1 if epoch else 0.0, "examples": 2000 * epoch,
                               "lr": lr * min(1.0, epoch / 2), "lr_end": lr * warm, "batch_size": batch,
                               "noise.b_simple": float(np.exp(rng.normal(5, 1.5)))})
    return Results(pd.DataFrame(runs), pd.DataFrame(epochs), None, pd.DataFrame(), pd.DataFrame())


@pytest.fixture(scope="module")
def drawn():
    data = prepare(results(), {"name": "chaffard", "train": {"target": {"metric": "test_acc", "value": 0.75}}})
    made = {name: figures.get(name)(data) for name in figures.in_order()}
    for fig in made.values():
        if fig is not None:
            fig.canvas.draw()
    yield data, {k: v for k, v in made.items() if v is not None}
    import matplotlib.pyplot as plt

    plt.close("all")


def test_the_figures_this_study_calls_for(drawn):
    _, made = drawn
    assert set(made) == {"curves", "final-by-batch", "time-by-batch", "schedule", "lr-batch-heatmap",
                         "steps-to-target", "noise-scale"}


def test_configurations_sorted_labelled_and_each_in_its_own_colour(drawn):
    data, made = drawn
    labels = [c.label for c in data.configs]
    assert labels == ["bs=20 lr=0.01 schedule=constant", "bs=100 lr=0.01 schedule=constant",
                      "bs=1000 lr=0.01 schedule=piecewise", "bs=1000 lr=0.01 schedule=constant",
                      "bs=1000 lr=0.1 schedule=constant"]
    assert len({matplotlib.colors.to_hex(c.colour) for c in data.configs}) == len(data.configs)
    for name in ("curves", "final-by-batch", "time-by-batch", "schedule", "noise-scale"):
        legend = made[name].legends[0]
        texts = [t.get_text() for t in legend.get_texts()]
        assert texts == labels, name  # whole labels, in order: nothing truncated, nothing scrambled
        colours = [matplotlib.colors.to_hex(h.get_color() if hasattr(h, "get_color") else h.lines[0].get_color())
                   for h in legend.legend_handles]
        assert colours == [matplotlib.colors.to_hex(c.colour) for c in data.configs], name


def test_markers_that_share_a_batch_size_are_dodged(drawn):
    _, made = drawn
    ax = made["final-by-batch"].axes[0]
    xs = [line.get_xdata()[0] for line in ax.lines if line.get_marker() not in ("None", "", None)
          and len(line.get_xdata()) == 1]
    near_1000 = {x for x in xs if 700 < x < 1400}  # each point's marker (and its error bar's caps)
    assert len(near_1000) == 3 and 1000.0 in near_1000


def _labelled(axis, limits) -> list[str]:
    lo, hi = sorted(limits)
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text() and lo <= t.get_position()[
        0 if axis.axis_name == "x" else 1] <= hi]


def test_every_log_axis_has_two_labelled_ticks_and_epochs_are_whole(drawn):
    _, made = drawn
    logs = 0
    for name, fig in made.items():
        for ax in fig.axes:
            for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
                if axis.get_scale() == "log":
                    logs += 1
                    assert len(_labelled(axis, limits)) >= 2, (name, axis.axis_name, limits)
            if ax.get_xlabel().startswith("epoch"):
                ticks = [float(t.get_text().replace("−", "-")) for t in ax.get_xticklabels() if t.get_text()]
                assert ticks and all(t == int(t) for t in ticks), (name, ticks)
    assert logs >= 8
    batch_axis = made["time-by-batch"].axes[0].xaxis
    assert {"20", "100", "1000"} <= set(_labelled(batch_axis, made["time-by-batch"].axes[0].get_xlim()))


def test_a_target_some_trials_missed_is_hollow_and_counted(drawn):
    _, made = drawn
    fig = made["time-by-batch"]
    assert len(fig.axes) == 3 and all(ax.get_visible() and ax.has_data() for ax in fig.axes)  # no blank panel
    target = fig.axes[1]
    assert target.get_ylabel() == "epochs to the target"
    hollow = [line for line in target.lines if line.get_markerfacecolor() in ("white", (1, 1, 1, 1))]
    assert len(hollow) == 3  # the three batch-1000 configurations, where 1 of 3 trials got there
    assert sorted(t.get_text() for t in target.texts) == ["1/3", "1/3", "1/3"]
    steps = made["steps-to-target"].axes[0]
    assert steps.get_title() == "Steps until the test accuracy reaches 75 %"


def test_the_learning_rate_shows_its_warm_up_within_epochs(drawn):
    _, made = drawn
    line = made["schedule"].axes[0].lines[0]
    x, y = line.get_xdata(), line.get_ydata()
    assert x[0] == 0 and x[1] == 1 and y[1] > y[0]  # epoch 1: from its first step's rate up to its last's


def test_the_noise_scale_band_is_geometric(drawn):
    _, made = drawn
    ax = made["noise-scale"].axes[0]
    assert ax.get_yscale() == "log"
    for band in ax.collections:
        vertices = np.concatenate([p.vertices for p in band.get_paths()])
        assert (vertices[:, 1] > 0).all()  # a mean ± std band would dip below zero where std > mean


def test_every_caption_is_whole_and_ends_in_a_full_stop():
    for name in figures.in_order():
        text = caption(name)
        assert text.endswith(".") and "\n" not in text and len(text) > 40, name
    assert caption("steps-to-target").endswith("are marked along the top.")


def test_labels_name_what_varies_and_honour_a_label_field():
    configs = [{"train.batch_size": 1000, "train.schedule": PYRAMID},
               {"train.batch_size": 1000, "train.schedule": "step(decay=0.5, every=10)"},
               {"train.batch_size": 1000, "train.schedule": "step(decay=0.375, every=10)"},
               {"train.batch_size": 20, "train.schedule": "constant", "label": "Chaffard's small batch"}]
    assert config_labels(configs, ["train.batch_size", "train.schedule"]) == [
        "bs=1000 schedule=piecewise", "bs=1000 schedule=step(decay=0.5)", "bs=1000 schedule=step(decay=0.375)",
        "Chaffard's small batch"]


def test_a_report_states_settings_environment_times_memory_and_a_quick_form(tiny_spec, tmp_path, capsys):
    from batchlab.cli import main
    from batchlab.report import write_report
    from batchlab.results.store import ResultsStore

    out = tmp_path / "tiny"
    assert main(["run", str(tiny_spec), "--out", str(out), "--quiet", "--no-report", "--jobs", "1"]) == 0
    store = ResultsStore(out)
    config_id = store.run_rows()[0]["config_id"]
    for batch, mb in ((16, 1.5), (200, 9.0)):
        store.add_measurement("memory", config_id, 0, f"batch {batch}",
                              {"batch_size": batch, "peak_rss_mb": 300 + mb, "step_mb": mb, "method": "VmHWM"})
    store.set_meta("quick", True)
    store.close()
    page = write_report(out).read_text()
    summary = (out / "summary.md").read_text()
    assert "Quick form." in page and "not expected to hold" in summary
    for title in ("## Settings", "## Time by configuration", "## Memory of a training step", "## Environment"):
        assert title in summary, title
    assert "| data.name | blobs |" in summary and "| train.batch_size | varies: 16, 200 |" in summary
    assert "| torch |" in summary and "not recorded with the runs" not in summary  # `batchlab run` records it
    assert "| bs=16 | 16 | 1.5 |" in summary
    assert (out / "figures" / "memory.svg").exists() and (out / "figures" / "memory.png").exists()
    assert "<h2>The spec</h2>" in page and "&quot;n_samples&quot;: 240" in page
