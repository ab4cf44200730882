"""Timeline plots and an HTML summary of a LOSO run (matplotlib, Agg backend, offline)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from spotnet.spotting import smooth_scores

__all__ = ["plot_timeline", "write_report"]


def plot_timeline(path, scores: np.ndarray, k: int, *, p: float, gt, spotted, title: str) -> None:
    """One PNG: raw and smoothed scores, the threshold, ground-truth and spotted intervals.

    Args:
        scores: (L,) raw window scores; gt, spotted: 0-based inclusive (start, end) pairs.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = smooth_scores(scores, k)
    fig, ax = plt.subplots(figsize=(10, 2.8), dpi=90)
    ax.plot(np.arange(len(scores)), scores, lw=0.6, color="0.6", label="raw score")
    if a.size:
        # a[t] covers windows t .. t + 2k - 1; draw it at its centre t + k.
        ax.plot(np.arange(a.size) + k, a, lw=1.4, color="C0", label="smoothed (2k)")
        ax.axhline(a.mean() + p * (a.max() - a.mean()), color="C3", ls="--", lw=1, label=f"threshold p={p}")
    for i, (s, e) in enumerate(gt):
        ax.axvspan(s, e, color="C2", alpha=0.25, label="ground truth" if i == 0 else None)
    for i, (s, e) in enumerate(spotted):
        ax.axvspan(s, e, ymin=0.0, ymax=0.08, color="C1", label="spotted" if i == 0 else None)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("frame")
    ax.legend(fontsize=7, loc="upper right", ncol=5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(out_dir, per_type: dict, pred, gt, result, *, p: float) -> Path:
    """Write ``plots/<type>/<video>.png`` and ``report.html`` under ``out_dir``; return the HTML path.

    Args:
        per_type: ``{type: {"k": k, "videos": [VideoWindows], "scores": {video: (L,) scores}}}``.
        pred, gt: EvalInterval lists (0-based); result: EvaluationResult.
    """
    out = Path(out_dir)
    rows = []
    for kind, info in per_type.items():
        (out / "plots" / kind).mkdir(parents=True, exist_ok=True)
        for video, scores in sorted(info["scores"].items()):
            g = [(it.onset, it.offset) for it in gt if it.video == video and it.type == kind]
            s = [(it.onset, it.offset) for it in pred if it.video == video and it.type == kind]
            rel = f"plots/{kind}/{video}.png"
            plot_timeline(out / rel, scores, info["k"], p=p, gt=g, spotted=s,
                          title=f"{video} - {kind} (k={info['k']}): {len(g)} ground truth, {len(s)} spotted")
            rows.append((kind, video, rel))
    table = html.escape(result.format_table())
    items = "\n".join(
        f'<h3>{html.escape(kind)}: {html.escape(video)}</h3><img src="{html.escape(rel)}" width="900">'
        for kind, video, rel in rows
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>SOFTNet LOSO report</title>
<style>body{{font-family:sans-serif;margin:2em}} pre{{background:#f4f4f4;padding:1em}}</style></head>
<body><h1>SOFTNet leave-one-subject-out report</h1>
<p>Spotting threshold p = {p}. Counts pooled over all held-out videos (MEGC 2020, IoU &ge; 0.5).
Files: <a href="metrics.json">metrics.json</a>, <a href="intervals.csv">intervals.csv</a>.</p>
<pre>{table}</pre>
<h2>Timelines</h2>
<p>Grey: raw window scores; blue: smoothed scores (2k moving average, drawn at the window centre);
red dashes: threshold; green: ground truth; orange bars: spotted intervals.</p>
{items}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
