"""The ``vadstream bench --plot`` figure: throughput by batch size and by stream count."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.ticker import NullLocator  # noqa: E402


def plot_bench(result: dict, path: Path) -> None:
    """Model frames/s per batch size (fp32 on each backend, the onnxruntime peer and the
    reduced precision) and, flooded, the
    pipeline's frames/s and the detector's memory per stream count."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    batches = [int(b) for b in result["model_fps"]]
    left.plot(batches, list(result["model_fps"].values()), "o-", label="fp32 (mxnet)")
    peers = result.get("peers")
    if peers:
        ours = peers["backends"].get("onnxruntime")
        if ours:
            left.plot([int(b) for b in ours["fps"]], list(ours["fps"].values()), "^-",
                      label="fp32 (onnxruntime backend)")
        peer = peers["onnxruntime"]["fps"]
        left.plot([int(b) for b in peer], list(peer.values()), "x:", color="grey",
                  label="peer: onnxruntime, default session")
    rp = result.get("reduced_precision")
    if rp and rp.get("model_fps"):
        left.plot([int(b) for b in rp["model_fps"]], list(rp["model_fps"].values()), "s-",
                  label=f"{rp['dtype']} ({rp.get('backend', 'mxnet')})")
    if result.get("gflop_per_frame"):         # the STAE's FLOP count only
        left.axhline(result["peak_gflops"] / result["gflop_per_frame"], color="grey", ls="--",
                     lw=1, label=f"fp32 peak ({result['peak_gflops']:.0f} GFLOP/s)")
    _log2_axis(left, batches)
    left.set(xlabel="batch (windows of 10 frames)", ylabel="frames/s", ylim=(0, None),
             title="model alone")
    left.legend(fontsize=8)
    pipe = result.get("pipeline")
    if pipe:
        rows = pipe["sweep"]
        streams = [r["streams"] for r in rows]
        right.plot(streams, [r["fps"] for r in rows], "o-", label="pipeline")
        best = result["model_fps"][str(pipe["flood"]["max_batch"])]
        right.axhline(best, color="tab:blue", ls=":", lw=1,
                      label=f"model alone, batch {pipe['flood']['max_batch']}")
        _log2_axis(right, streams)
        right.set(xlabel="streams", ylabel="frames/s scored",
                  ylim=(0, 1.2 * max(best, *(r["fps"] for r in rows))),
                  title="whole pipeline, flooded (stride = window)")
        mem = right.twinx()
        mem.plot(streams, [r["rss_mb"] for r in rows], "s--", color="tab:red",
                 label="detector RSS")
        mem.set(ylabel="detector RSS (MB)", ylim=(0, 1.2 * max(r["rss_mb"] for r in rows)))
        lines = right.get_legend_handles_labels()
        more = mem.get_legend_handles_labels()
        right.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
    fig.suptitle(f"vadstream bench on {result['device']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log2_axis(ax, values: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(values)
    ax.set_xticklabels([str(v) for v in values])
