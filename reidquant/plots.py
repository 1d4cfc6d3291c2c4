"""Pictures of the summary table: accuracy against speed, size, and fidelity per variant."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

MARKERS = {"cpu": "o", "cuda": "s"}


def accuracy_vs_speed(table: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for device, rows in table.groupby("device"):
        ax.scatter(rows["model_img_per_s"], rows["mAP"] * 100, marker=MARKERS.get(device, "o"), s=60,
                   label=device)
        for _, row in rows.iterrows():
            ax.annotate(row["variant"], (row["model_img_per_s"], row["mAP"] * 100), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("model throughput (images/s, log scale)")
    ax.set_ylabel("mAP (%)")
    ax.set_title("Accuracy against speed, per device")
    ax.grid(True, alpha=0.3)
    ax.legend(title="device")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def size(table: pd.DataFrame, path: Path) -> None:
    sizes = table.drop_duplicates("variant").set_index("variant")["size_mb"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.barh(sizes.index, sizes.to_numpy(), color="tab:blue")
    ax.bar_label(bars, fmt="%.1f MB", fontsize=8, padding=3)
    ax.set_xlabel("deployed artifact size (MB)")
    ax.set_title("Model size per variant")
    ax.margins(x=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fidelity(table: pd.DataFrame, path: Path) -> None:
    labels = table["variant"] + " / " + table["device"]
    fig, (ax_cos, ax_top1) = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    ax_cos.barh(labels, 1 - table["cos_mean"].to_numpy(), color="tab:orange")
    ax_cos.set_xscale("symlog", linthresh=1e-5)
    ax_cos.set_xlabel("1 - mean cosine to fp32 (lower is closer)")
    ax_top1.barh(labels, table["top1_agreement"].to_numpy() * 100, color="tab:green")
    ax_top1.set_xlim(0, 100)
    ax_top1.set_xlabel("top-1 match agrees with fp32 (%)")
    fig.suptitle("Feature fidelity against fp32 on the same device")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_summary(table: pd.DataFrame, outputs) -> None:
    """Draw the three plots to ``outputs.accuracy``, ``outputs.size`` and ``outputs.fidelity``."""
    for path in (outputs.accuracy, outputs.size, outputs.fidelity):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    accuracy_vs_speed(table, Path(outputs.accuracy))
    size(table, Path(outputs.size))
    fidelity(table, Path(outputs.fidelity))
