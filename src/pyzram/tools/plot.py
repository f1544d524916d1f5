"""``pyzram run --plot FILE.png``: the run's time series as one PNG.

Three panels over the run's wall-clock time, from the report's ``timeline``
(about 64 samples over the fill and 64 over the pattern, more for a long
run: one at least every 512 steps): the pool
(``mem_used_total``) against the data it holds (``orig_data_size``) and the
memcg limit of the process's resident pages, the data ratio
(``orig_data_size / compr_data_size``, drawn once at least 64 pages are
stored: over the first few pages it is noise), and the swap-out and swap-in
rates (pages/s between samples, from ``pswpout``/``pswpin``).  A dashed line
marks where the fill ends and the access pattern begins.
"""

from __future__ import annotations

import os

import numpy as np

from pyzram.tools.commands.run import RunReport


def plot_run(report: RunReport, path: str | os.PathLike[str]) -> None:
    """Write the PNG (1200 x 900 pixels); ``ValueError`` if the run was too short."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = report.timeline
    if len(tl) < 2:
        raise ValueError("the run is too short to plot (fewer than 2 samples)")
    t = np.array([s["t"] for s in tl])
    mib = 1 / 2**20
    used = np.array([s["mem_used_total"] for s in tl]) * mib
    orig = np.array([s["orig_data_size"] for s in tl]) * mib
    compr = np.array([s["compr_data_size"] for s in tl])
    stored = orig / mib >= 64 * 4096  # at least 64 pages: below that the ratio is noise
    ratio = np.divide(orig / mib, compr, out=np.full_like(orig, np.nan), where=stored & (compr > 0))
    pattern = [s["t"] for s in tl if s.get("phase") == "pattern"]
    dt = np.diff(t)
    out_rate = np.diff([s["pswpout"] for s in tl]) / dt
    in_rate = np.diff([s["pswpin"] for s in tl]) / dt

    fig, axes = plt.subplots(3, 1, figsize=(8, 6), dpi=150, sharex=True)
    fig.suptitle(
        f"pyzram run: {report.pages} pages, {report.algorithm}, {report.io_path} path, "
        f"limit {report.mem_limit_pages} pages"
    )
    axes[0].plot(t, orig, label="data stored (orig_data_size)")
    axes[0].plot(t, used, label="pool (mem_used_total)")
    axes[0].axhline(
        report.mem_limit_pages * 4096 * mib, color="tab:red", linestyle=":", linewidth=1,
        label="memcg limit (resident pages)",
    )  # fmt: skip
    axes[0].set_ylabel("MiB")
    axes[0].legend(loc="upper left", fontsize="small")
    axes[1].plot(t, ratio, color="tab:green")
    axes[1].set_ylabel("data ratio\n(orig / compr)")
    if pattern:
        for ax in axes:
            ax.axvline(pattern[0], color="grey", linestyle="--", linewidth=1)
        axes[0].annotate(
            "fill | pattern", (pattern[0], 1), xycoords=("data", "axes fraction"),
            xytext=(3, -12), textcoords="offset points", fontsize="small", color="grey",
        )  # fmt: skip
    axes[2].plot(t[1:], out_rate, label="swap-out")
    axes[2].plot(t[1:], in_rate, label="swap-in")
    axes[2].set_ylabel("pages/s")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_pareto(report: dict, path: str | os.PathLike[str]) -> None:
    """``pyzram sweep report``'s PNG (1200 x 900 pixels): every cell's memory saved
    against the kernel's predicted CPU cost, the Pareto front joined and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = report["cells"]
    by_id = {c["cell_id"]: c for c in cells}
    fig, ax = plt.subplots(figsize=(12, 9), dpi=100)
    ax.scatter(
        [c["predicted_kernel_cpu_s"] * 1e3 for c in cells],
        [c["memory_saved_bytes"] / 2**20 for c in cells],
        color="0.6",
        label="cell",
    )
    front = [by_id[i] for i in report["pareto_front"]]
    xs = [c["predicted_kernel_cpu_s"] * 1e3 for c in front]
    ys = [c["memory_saved_bytes"] / 2**20 for c in front]
    ax.plot(xs, ys, "o-", color="C3", label="Pareto front")
    for c, x, y in zip(front, xs, ys, strict=True):
        ax.annotate(c["label"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("kernel CPU for the swapping, predicted (ms)")
    ax.set_ylabel("memory saved (MiB): orig_data_size - mem_used_total")
    ax.set_title(f"pyzram sweep: {len(cells)} cells")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
