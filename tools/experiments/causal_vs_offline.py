"""Causal (live) against offline spotting, from the same window scores of a trained LOSO run.

    python tools/experiments/causal_vs_offline.py RUN_DIR STORE [--json OUT.json]

RUN_DIR is a ``spotnet train`` run (its ``scores/<type>/<video>.npy`` are the held-out scores of
each fold), STORE the feature store it was trained on (ground truth, fps). For each expression
type it spots the same scores with the offline spotter (SPEC 7, whole-video threshold) and with
:class:`spotnet.causal.CausalSpotter` under each threshold rule, and reports MEGC F1 and, for
every true positive of the causal spotter, its latency: the frame at which the interval was
reported minus the ground-truth expression's last frame (and first frame), in seconds.

``make demo`` gives a run and store of the synthetic benchmark (``demo_out/run``,
``demo_out/features.zarr``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spotnet.causal import CausalSpotter, confirmation_delay
from spotnet.dataset import k_for_type, list_videos, open_store
from spotnet.evaluation import EvalInterval, evaluate, iou
from spotnet.spotting import spot_video

#: The rules compared (CausalSpotter options besides k and fps).
RULES = {
    "meanmax": {"rule": "meanmax"},
    "quantile q=0.95": {"rule": "quantile", "quantile": 0.95},
}


def _causal(scores: np.ndarray, video, expression: str, fps: float, options: dict) -> list[EvalInterval]:
    spotter = CausalSpotter(video.k, fps=fps, **options)
    found = [it for s in scores for it in spotter.push(s)] + spotter.finish()
    return [EvalInterval(video.video, it.start, min(it.end, video.n_frames - 1), expression, it.score)
            for it in found]


def _latencies(pred, gt, k: int, fps: float) -> list[tuple[float, float]]:
    """(after the expression's end, after its onset) in seconds, per predicted interval overlapping
    a ground-truth one with IoU >= 0.5 (MEGC's true positives)."""
    out = []
    for it in pred:
        match = [g for g in gt if g.video == it.video and iou((it.onset, it.offset), (g.onset, g.offset)) >= 0.5]
        if match:
            reported = it.onset + confirmation_delay(k)  # the frame at which the spotter reports it
            g = max(match, key=lambda g: iou((it.onset, it.offset), (g.onset, g.offset)))
            out.append(((reported - g.offset) / fps, (reported - g.onset) / fps))
    return out


def compare(run_dir: Path, store: Path, *, p: float = 0.55, history_s: float = 60.0, warmup_s: float = 2.0) -> dict:
    reader = open_store(store)
    result: dict = {"run": str(run_dir), "store": str(store), "p": p, "history_s": history_s,
                    "warmup_s": warmup_s, "types": {}}
    for expression in ("macro", "micro"):
        k = k_for_type(store, expression)
        videos = [v for v in list_videos(store, k) if (run_dir / "scores" / expression / f"{v.video}.npy").is_file()]
        if not videos:
            continue
        gt = [EvalInterval(v.video, on, off, expression) for v in videos for on, off in v.spans(expression)]
        offline, causal = [], {name: [] for name in RULES}
        fps_all = []
        for v in videos:
            scores = np.load(run_dir / "scores" / expression / f"{v.video}.npy")
            fps = float(reader.video_attrs(v.video).get("fps") or 30.0)
            fps_all.append(fps)
            offline += spot_video(scores, v, expression, p=p)
            for name, options in RULES.items():
                causal[name] += _causal(scores, v, expression, fps,
                                        {"p": p, "history_s": history_s, "warmup_s": warmup_s, **options})
        fps = float(np.median(fps_all))
        entry = {"k": k, "fps": fps, "videos": len(videos), "gt": len(gt),
                 "offline": getattr(evaluate(offline, gt), expression).__dict__}
        for name, pred in causal.items():
            lat = _latencies(pred, gt, k, fps)
            after_end = [a for a, _ in lat]
            entry[name] = {**getattr(evaluate(pred, gt), expression).__dict__,
                           "latency_after_end_s": {"median": float(np.median(after_end)) if lat else None,
                                                   "max": float(np.max(after_end)) if lat else None},
                           "latency_after_onset_s": {"median": float(np.median([b for _, b in lat])) if lat else None,
                                                     "max": float(np.max([b for _, b in lat])) if lat else None}}
        result["types"][expression] = entry
        result.setdefault("_pooled", {}).setdefault("offline", ([], []))
        result["_pooled"]["offline"][0].extend(offline)
        result["_pooled"]["offline"][1].extend(gt)
        for name, pred in causal.items():
            result["_pooled"].setdefault(name, ([], []))
            result["_pooled"][name][0].extend(pred)
            result["_pooled"][name][1].extend(gt)
    pooled = result.pop("_pooled", {})
    result["overall"] = {name: evaluate(pred, gt).overall.__dict__ for name, (pred, gt) in pooled.items()}
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("store", type=Path)
    parser.add_argument("--history", type=float, default=60.0, help="history of the causal threshold, s")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up, s")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = compare(args.run_dir, args.store, history_s=args.history, warmup_s=args.warmup)
    print(f"{'type':6} {'spotter':18} {'TP':>4} {'FP':>4} {'FN':>4} {'F1':>6}  latency after end / onset (median, max)")
    for expression, entry in result["types"].items():
        o = entry["offline"]
        print(f"{expression:6} {'offline':18} {o['tp']:>4} {o['fp']:>4} {o['fn']:>4} {o['f1']:>6.4f}  "
              "(at the video's end)")
        for name in RULES:
            c = entry[name]
            end, onset = c["latency_after_end_s"], c["latency_after_onset_s"]
            lat = "-" if end["median"] is None else (f"{end['median']:.2f} / {onset['median']:.2f} s "
                                                     f"(max {end['max']:.2f} / {onset['max']:.2f} s)")
            print(f"{expression:6} {name:18} {c['tp']:>4} {c['fp']:>4} {c['fn']:>4} {c['f1']:>6.4f}  {lat}")
    for name, o in result["overall"].items():
        print(f"{'all':6} {name:18} {o['tp']:>4} {o['fp']:>4} {o['fn']:>4} {o['f1']:>6.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
