#!/usr/bin/env python3
"""Plots store directory size over time from `oxifaster bench --dir-trace`
files (`seconds,bytes` lines), one line per file, with the budget drawn.

    scripts/plot_dir_trace.py OUT.png BUDGET_MIB LABEL=FILE [LABEL=FILE ...]

Needs matplotlib (`pip install matplotlib`).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, budget = sys.argv[1], float(sys.argv[2])
    fig, ax = plt.subplots(figsize=(9, 5))
    for spec in sys.argv[3:]:
        label, path = spec.split("=", 1)
        xs, ys = [], []
        with open(path) as f:
            for line in f:
                secs, size = line.strip().split(",")
                xs.append(float(secs))
                ys.append(int(size) / 2**20)
        ax.plot(xs, ys, label=label, linewidth=1)
    ax.axhline(budget, color="red", linestyle="--", linewidth=1, label=f"budget {budget:.0f} MiB")
    ax.set_xlabel("seconds")
    ax.set_ylabel("store directory (MiB)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
