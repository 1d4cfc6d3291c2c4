"""Pictures of results: the summary (accuracy against speed, size, fidelity) and training.

Figures are made with ``matplotlib.figure.Figure``, not pyplot: no backend is chosen for
the whole process and no figure outlives its function.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator

from reidquant.table import latency_batches, pareto_front

MARKERS = {"cpu": "o", "cuda": "s"}


def size(table: pd.DataFrame, path: Path) -> None:
    sizes = table.drop_duplicates("variant").set_index("variant")["size_mb"]
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    bars = ax.barh(sizes.index, sizes.to_numpy(), color="tab:blue")
    ax.bar_label(bars, fmt="%.1f MB", fontsize=8, padding=3)
    ax.set_xlabel("deployed artifact size (MB)")
    ax.set_title("Model size per variant")
    ax.margins(x=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def fidelity(table: pd.DataFrame, path: Path) -> None:
    labels = table["variant"] + " / " + table["device"]
    fig = Figure(figsize=(9, 3.5))
    ax_cos, ax_top1 = fig.subplots(1, 2, sharey=True)
    ax_cos.barh(labels, 1 - table["cos_mean"].to_numpy(), color="tab:orange")
    ax_cos.set_xscale("symlog", linthresh=1e-5)
    ax_cos.set_xlabel("1 - mean cosine to fp32 (lower is closer)")
    ax_top1.barh(labels, table["top1_agreement"].to_numpy() * 100, color="tab:green")
    ax_top1.set_xlim(0, 100)
    ax_top1.set_xlabel("top-1 match agrees with fp32 (%)")
    fig.suptitle("Feature fidelity against fp32 on the same device")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _separate(labels, fig, ax, obstacles=(), pad_px: float = 2.0) -> None:
    """Move labels (annotations placed in data coordinates) up or down, each the least it takes,
    until none overlaps another or any of ``obstacles`` (display-space boxes: the points and
    their bars): measured as drawn, left to right."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    placed = list(obstacles)
    for label in sorted(labels, key=lambda a: a.xyann[0]):
        box = Text.get_window_extent(label, renderer)  # the name alone, not its leader line
        step = box.height / 2 + pad_px
        for k in range(80):  # 0, up 1, down 1, up 2, down 2, ...
            shift = step * ((k + 1) // 2) * (1 if k % 2 else -1)
            moved = box.translated(0, shift)
            if not any(moved.overlaps(other) for other in placed):
                break
        x, y = ax.transData.transform(label.xyann)
        label.xyann = tuple(ax.transData.inverted().transform((x, y + shift)))
        placed.append(moved)


def decision_figure(table: pd.DataFrame, speed: str, what: str, min_cos: float = 0.995,
                    max_mAP_drop: float = 1.0) -> tuple[Figure, list]:
    """``mAP_delta`` with its paired interval against ``speed`` (a column of speedups over the
    fastest fp32 row, with ``_lo``/``_hi``) on a log axis: every point named in place with its
    cos_min, the Pareto front of each device drawn, the budget's mAP floor shaded, rows outside
    the budget hollow. Returns the figure and its point labels."""
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    several = table["device"].nunique() > 1
    for _, row in table.iterrows():
        x, y = row[speed], row["mAP_delta"]
        inside = bool(row["within_budget"])
        # A median of few rounds can sit just outside its pairs' 10th-90th percentile: no bar then.
        ax.errorbar(x, y, xerr=[[max(0.0, x - row[f"{speed}_lo"])], [max(0.0, row[f"{speed}_hi"] - x)]],
                    yerr=[[max(0.0, y - row["mAP_delta_lo"])], [max(0.0, row["mAP_delta_hi"] - y)]],
                    fmt=MARKERS.get(row["device"], "o"), color="tab:blue" if inside else "tab:red",
                    mfc="tab:blue" if inside else "white", markersize=7, capsize=3, lw=1)
    on_front = pareto_front(table, speed)  # per device
    for device, rows_ in table.groupby("device", sort=False):
        front = rows_[on_front[rows_.index]].sort_values(speed)
        # The front as a staircase: what each speed buys at best, down to the fastest row.
        ax.step(front[speed], front["mAP_delta"], where="post", color="grey", lw=1, alpha=0.7, zorder=0)
        ax.plot(front[speed], front["mAP_delta"], "o", ms=14, mfc="none", mec="black", mew=1.2,
                label="Pareto front" + (f" ({device})" if several else ""))
    low, high = table["mAP_delta_lo"].min(), table["mAP_delta_hi"].max()
    limited = math.isfinite(max_mAP_drop)  # infinity: no mAP limit, nothing to draw
    span = max(high - low, 2 * max_mAP_drop if limited else 0.0, 1.0)
    bottom, top = min(low, -max_mAP_drop if limited else low) - 0.1 * span, high + 0.1 * span
    left, right = table[f"{speed}_lo"].min() / 1.15, table[f"{speed}_hi"].max() * 2.2
    ax.set_xscale("log")
    ax.set_xlim(left, right)  # room for the names right of the fastest points
    ax.set_ylim(bottom, top)
    labels = []
    for _, row in table.iterrows():
        name = row["variant"] + (f" / {row['device']}" if several else "") + f"  cos_min {row['cos_min']:.4f}"
        # Right of the point's horizontal bar, its foot at the point's height: no bar strikes through it.
        labels.append(ax.annotate(name, (row[speed], row["mAP_delta"]), xytext=(row[f"{speed}_hi"] * 1.04,
                                                                               row["mAP_delta"]),
                                  fontsize=8, va="bottom", arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6}))
    if limited:
        ax.axhspan(bottom, -max_mAP_drop, color="tab:red", alpha=0.06, lw=0)
        ax.axhline(-max_mAP_drop, color="tab:red", lw=0.8, ls="--",
                   label=f"budget: mAP drop {max_mAP_drop:g} points (hollow red: outside, or cos_min < {min_cos:g})")
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    times = FuncFormatter(lambda value, _: f"{value:g}\u00d7")
    ax.xaxis.set_major_formatter(times)
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2, 3, 5)))
    ax.xaxis.set_minor_formatter(times)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(f"{what}, over the fastest fp32 row of the device (log scale)")
    ax.set_ylabel("mAP difference to fp32 (points)")
    ax.set_title(f"What to ship: {what} against accuracy (bars: 10th-90th percentile of rounds; 95% paired "
                 "bootstrap interval)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    # Each point with its horizontal bar, a few pixels high: no name is put over one.
    bars = [Bbox.from_extents(*ax.transData.transform((row[f"{speed}_lo"], row["mAP_delta"])) - (4, 5),
                              *ax.transData.transform((row[f"{speed}_hi"], row["mAP_delta"])) + (4, 5))
            for _, row in table.iterrows()]
    _separate(labels, fig, ax, bars)
    return fig, labels


def accuracy_vs_speed(table: pd.DataFrame, path: Path, min_cos: float = 0.995, max_mAP_drop: float = 1.0) -> None:
    """``decision_figure`` at the throughput batch."""
    what = f"throughput at batch {int(table['batch_size'].iloc[0])}"
    fig, _ = decision_figure(table, "speedup_vs_fastest_fp32", what, min_cos, max_mAP_drop)
    fig.savefig(path, dpi=120)


def latency_vs_accuracy(table: pd.DataFrame, path: Path, min_cos: float = 0.995, max_mAP_drop: float = 1.0) -> None:
    """``decision_figure`` at the smallest latency batch (per call)."""
    b = latency_batches(table)[0]
    fig, _ = decision_figure(table, f"latency_speedup_b{b}_vs_fastest_fp32", f"latency at batch {b} (per call)",
                             min_cos, max_mAP_drop)
    fig.savefig(path, dpi=120)


def plot_summary(table: pd.DataFrame, outputs, min_cos: float = 0.995, max_mAP_drop: float = 1.0,
                 min_rounds: int = 5) -> None:
    """Draw the plots to ``outputs.accuracy``, ``outputs.size``, ``outputs.fidelity`` and
    ``outputs.latency``."""
    for path in (outputs.accuracy, outputs.size, outputs.fidelity, outputs.latency):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    accuracy_vs_speed(table, Path(outputs.accuracy), min_cos, max_mAP_drop)
    size(table, Path(outputs.size))
    fidelity(table, Path(outputs.fidelity))
    latency_vs_accuracy(table, Path(outputs.latency), min_cos, max_mAP_drop)


def training_curve(history: list[dict], path: Path, arch: str) -> None:
    """Loss and accuracy per epoch of a training run of network ``arch``."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(6, 3.5))
    ax_loss = fig.subplots()
    ax_loss.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue", label="loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss", color="tab:blue")
    ax_acc = ax_loss.twinx()
    ax_acc.plot(epochs, [h["acc"] for h in history], "s--", color="tab:orange", label="accuracy")
    ax_acc.set_ylabel("training accuracy", color="tab:orange")
    ax_acc.set_ylim(0, 1)
    ax_loss.set_title(f"{arch} training")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def sensitivity(layers: dict[str, list[dict]], path: Path) -> None:
    """Each int8 variant's layers along the network, its stretches (stem, dense blocks or
    stages, transitions, embedding head) shaded and named: the SQNR against fp32 above (PT2E),
    the val cos_mean gained by leaving a layer in float below (every OpenVINO layer, PT2E's
    five lowest-SQNR ones)."""
    measures = [(key, label) for key, label in (("sqnr_db", "SQNR against fp32 on val (dB)"),
                                                ("cos_mean_gain", "val cos_mean gained in float"))
                if any(row.get(key) is not None for rows in layers.values() for row in rows)]
    fig = Figure(figsize=(10, 2.5 + 2.5 * max(len(measures), 1)))
    if not measures:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no int8 variant of a type that measures its layers ran", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        fig.savefig(path, dpi=120)
        return
    axes = fig.subplots(len(measures), 1, sharex=True, squeeze=False)[:, 0]
    colours = colormaps["tab10"]
    longest = max(layers.values(), key=len)
    spans: list[list] = []  # [part, first index, last index]
    for row in longest:
        if spans and spans[-1][0] == row["part"]:
            spans[-1][2] = row["index"]
        else:
            spans.append([row["part"], row["index"], row["index"]])
    for ax, (key, label) in zip(axes, measures):
        for i, (variant, rows) in enumerate(layers.items()):
            points = [r for r in rows if r.get(key) is not None and math.isfinite(r[key])]
            if points:
                dense = len(points) > len(rows) // 2
                ax.plot([r["index"] for r in points], [r[key] for r in points], ".-" if dense else "o",
                        lw=0.8, ms=3 if dense else 5, color=colours(i % 10), label=variant)
        for k, (part, first, last) in enumerate(spans):
            if k % 2 == 0:
                ax.axvspan(first - 0.5, last + 0.5, color="0.92", zorder=0)
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if key == "sqnr_db" else "upper right")
    for part, first, last in spans:
        axes[0].text((first + last) / 2, 1.01, part, transform=axes[0].get_xaxis_transform(), ha="center",
                     va="bottom", fontsize=7, rotation=30 if last - first < 6 else 0)
    axes[-1].set_xlabel("quantized convolution / linear layer, in network order")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def search_accuracy(table: pd.DataFrame, path: Path) -> None:
    """mAP difference to exact search (paired interval) against bytes per image, one point per
    (variant, device, index), named beside it."""
    fig = Figure(figsize=(8, 4.8))
    ax = fig.subplots()
    colours = colormaps["tab10"]
    for i, ((variant, device), rows) in enumerate(table.groupby(["variant", "device"], sort=False)):
        ax.errorbar(rows["bytes_per_image"], rows["mAP_delta"],
                    yerr=[rows["mAP_delta"] - rows["mAP_delta_lo"], rows["mAP_delta_hi"] - rows["mAP_delta"]],
                    fmt=MARKERS.get(device, "o"), color=colours(i % 10), capsize=3, label=f"{variant} / {device}")
        for _, row in rows.iterrows():
            ax.annotate(row["index"], (row["bytes_per_image"], row["mAP_delta"]), xytext=(4, 4),
                        textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("bytes per image the index holds (log scale; float32 embeddings: 2,048)")
    ax.set_ylabel("mAP difference to exact search (points)")
    ax.set_title("What compressing and approximating the gallery costs (bars: 95% paired bootstrap interval)",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def search_latency(found: dict, path: Path) -> None:
    """Median time of one query's search against the images searched, per index (``found``: each
    (variant, device)'s search record)."""
    fig = Figure(figsize=(8, 4.8))
    ax = fig.subplots()
    colours = colormaps["tab10"]
    names = list(dict.fromkeys(row["index"] for record in found.values() for row in record["indexes"]))
    styles = ["-", "--", ":", "-."]
    for j, ((variant, device), record) in enumerate(found.items()):
        for row in record["indexes"]:
            points = sorted((int(size), timing["1"]["p50_ms"]) for size, timing in row["latency"].items()
                            if "1" in timing)
            ax.plot([p[0] for p in points], [p[1] for p in points], "o" + styles[j % len(styles)],
                    color=colours(names.index(row["index"]) % 10),
                    label=row["index"] + (f" ({variant} / {device})" if len(found) > 1 else ""))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images searched (gallery and distractors)")
    ax.set_ylabel("one query, median ms (first 10 results)")
    ax.set_title("Query time against gallery size", fontsize=9)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
