"""The throughput chart of ``jobpersist bench --plot`` (matplotlib, imported only here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Timing(Protocol):
    """One implementation's save and load time at one payload size (``cli.bench.Timing``)."""

    impl: str
    size: int
    save: float
    load: float


def plot(
    timings: Sequence[Timing], fmt: str, path: str, title: str, size_label: Callable[[int], str]
) -> None:
    """Writes the throughput chart of ``timings`` to ``path`` (needs matplotlib), titled
    ``title``, its payload sizes labelled by ``size_label``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(t.impl for t in timings))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, what in zip(axes, ("save", "load"), strict=True):
        for name in names:
            points = sorted((t.size, t) for t in timings if t.impl == name)
            xs = [size / (1 << 20) for size, _ in points]
            ys = [size / getattr(t, what) / 1e6 for size, t in points]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        sizes = sorted({t.size for t in timings})
        ax.set_xticks([size / (1 << 20) for size in sizes], [size_label(size) for size in sizes])
        ax.minorticks_off()
        ax.set_xlabel("payload size (MiB)")
        ax.set_title(f"{what} ({fmt})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("throughput (MB/s)")
    axes[0].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
