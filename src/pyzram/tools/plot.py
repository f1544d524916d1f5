"""``pyzram run --plot FILE.png``: the run's time series as one PNG.

Three panels over the run's wall-clock time, from the report's ``timeline``
(sampled every 512 accesses): the pool (``mem_used_total``) against the data
it holds (``orig_data_size``), the compression ratio
(``orig_data_size / compr_data_size``), and the swap-out and swap-in rates
(pages/s between samples, from ``pswpout``/``pswpin``).
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
    ratio = np.divide(orig / mib, compr, out=np.zeros_like(orig), where=compr > 0)
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
    axes[0].set_ylabel("MiB")
    axes[0].legend(loc="upper left", fontsize="small")
    axes[1].plot(t, ratio, color="tab:green")
    axes[1].set_ylabel("compression ratio")
    axes[2].plot(t[1:], out_rate, label="swap-out")
    axes[2].plot(t[1:], in_rate, label="swap-in")
    axes[2].set_ylabel("pages/s")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
