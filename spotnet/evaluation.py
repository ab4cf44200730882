"""MEGC 2020 spotting evaluation (SPEC section 8): IoU, matching, counts, P/R/F1, AP@[.5:.95].

Conventions:

- Intervals are 0-based, inclusive ``(onset, offset)`` frame pairs inside the code; CSV files
  hold 1-based inclusive frames (columns ``video, onset, offset, type[, score]``).
- **Matching** (per video and type, greedy, one to one): spotted intervals are taken in
  temporal order (by onset, then offset), as the MEGC code walks its predictions. Each takes the
  ground-truth interval with the highest IoU (the last one on ties, as the released code's
  ``argsort(iou)[::-1]`` does); it is a TP if that IoU is
  >= the threshold (0.5; exactly 0.5 counts) and that interval is not matched yet, otherwise an
  FP. It does not fall back to its second-best interval. FN = ground truth - TP.
- Counts are pooled over videos; "overall" pools the macro and micro counts. Precision, recall
  and F1 are 0 when their denominator is 0.
- **AP@[.5:.95]**: for each IoU threshold 0.50, 0.55, .., 0.95, the spotted intervals of every
  video are matched as above but in decreasing score order (the usual detection-AP rule, so
  that a better-scored interval claims a ground truth first), then ranked together by
  decreasing score (stable: ties keep video/onset order). AP is the all-point interpolated area
  under the precision-recall curve (PASCAL VOC 2010+): precision is made non-increasing from the
  right and summed over every recall step, ``AP = sum_i (r_i - r_{i-1}) * max_{j >= i} p_j``,
  with recall relative to all ground-truth intervals. The reported value is the mean over the
  ten thresholds. It is 0 without ground truth, and ``None`` when any spotted interval has no
  score. "Overall" ranks macro and micro intervals together.
- ``ap_ranking="released"`` computes AP the released notebook's way: it gives every spotted
  interval confidence 0, so nothing is ranked by score; the intervals are matched in temporal
  order (as for the counts) and taken in the order they come (videos by name, then time). The
  released code's order is that of its LOSO folds, and its sort of equal confidences is not
  stable, so its value can differ with the order; F1 does not depend on it.
- Unlike the released code, a video without any spotted interval gets no dummy ``[0, 0]``
  prediction; its ground-truth intervals are simply FNs.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowkit.io.annotations import TYPES
from flowkit.io.atomic import atomic_write
from spotnet.errors import SpotnetError

__all__ = [
    "AP_RANKINGS",
    "CSV_COLUMNS",
    "IOU_THRESHOLDS",
    "EvalInterval",
    "EvaluationResult",
    "Scores",
    "average_precision",
    "evaluate",
    "evaluate_csv",
    "iou",
    "match_video",
    "read_intervals_csv",
    "write_intervals_csv",
]

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: How AP ranks the spotted intervals: by score, or not at all (the released notebook's way).
AP_RANKINGS = ("score", "released")
CSV_COLUMNS = ("video", "onset", "offset", "type")


@dataclass(frozen=True)
class EvalInterval:
    """One interval of a video: 0-based inclusive frames, type 'macro' or 'micro', optional score."""

    video: str
    onset: int
    offset: int
    type: str
    score: float | None = None


@dataclass(frozen=True)
class Scores:
    """Counts and metrics of one expression type (or of both pooled)."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap50_95: float | None


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of macro, micro and overall (both pooled)."""

    macro: Scores
    micro: Scores
    overall: Scores

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{"macro": {...}, "micro": {...}, "overall": {...}}`` with plain JSON-able values."""
        return {name: asdict(getattr(self, name)) for name in ("macro", "micro", "overall")}

    def format_table(self) -> str:
        """A text table laid out like the paper's Table 2, plus the AP@[.5:.95] column."""
        header = f"{'':<9}{'TP':>6}{'FP':>6}{'FN':>6}{'P':>9}{'R':>9}{'F1':>9}{'AP@[.5:.95]':>14}"
        lines = [header, "-" * len(header)]
        for name in ("macro", "micro", "overall"):
            s: Scores = getattr(self, name)
            ap = "-" if s.ap50_95 is None else f"{s.ap50_95:.4f}"
            lines.append(
                f"{name.capitalize():<9}{s.tp:>6}{s.fp:>6}{s.fn:>6}"
                f"{s.precision:>9.4f}{s.recall:>9.4f}{s.f1:>9.4f}{ap:>14}"
            )
        return "\n".join(lines)


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Frame-inclusive IoU of two intervals ``(start, end)``.

    >>> iou((0, 4), (4, 8))  # one shared frame out of nine
    0.1111111111111111
    """
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


def match_video(
    predictions: Sequence[tuple[int, int]],
    ground_truth: Sequence[tuple[int, int]],
    *,
    threshold: float = 0.5,
) -> list[bool]:
    """Greedy one-to-one matching of one video's intervals, in the order given.

    Each prediction takes its best-IoU ground-truth interval (the last of equal ones); it is a
    TP when that IoU is >= ``threshold`` and the interval is still free.

    Args:
        predictions: (start, end) pairs, processed in this order.
        ground_truth: (onset, offset) pairs.
        threshold: IoU needed for a TP (keyword-only).

    Returns:
        One flag per prediction, True for a TP.
    """
    taken = [False] * len(ground_truth)
    flags = []
    for pred in predictions:
        best, best_iou = -1, 0.0
        for j, gt in enumerate(ground_truth):
            value = iou(pred, gt)
            if value > 0 and value >= best_iou:  # the last of equal IoUs, as the released code
                best, best_iou = j, value
        hit = best >= 0 and best_iou >= threshold and not taken[best]
        if hit:
            taken[best] = True
        flags.append(hit)
    return flags


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def average_precision(scores: Sequence[float], is_tp: Sequence[bool], n_ground_truth: int) -> float:
    """All-point interpolated AP of detections ranked by decreasing score (stable on ties)."""
    if n_ground_truth == 0 or len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(is_tp, dtype=np.float64)[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / n_ground_truth
    # Envelope: the best precision at this recall or any higher one.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def _check_intervals(intervals: Iterable, what: str) -> list[EvalInterval]:
    out = []
    for it in intervals:
        video, onset, offset, kind = it.video, it.onset, it.offset, it.type
        score = getattr(it, "score", None)
        if kind not in TYPES:
            raise SpotnetError(f"{what} type should be 'macro' or 'micro', got {kind!r} (video {video})")
        if not (0 <= onset <= offset):
            raise SpotnetError(
                f"{what} interval should have 0 <= onset <= offset, got ({onset}, {offset}) in video {video}"
            )
        if score is not None and not math.isfinite(score):
            raise SpotnetError(f"{what} score should be finite, got {score} in video {video}")
        out.append(EvalInterval(str(video), int(onset), int(offset), kind, None if score is None else float(score)))
    return out


def _group(intervals: list[EvalInterval], kind: str) -> dict[str, list[EvalInterval]]:
    groups: dict[str, list[EvalInterval]] = defaultdict(list)
    for it in intervals:
        if it.type == kind:
            groups[it.video].append(it)
    return groups


def _type_matches(pred: list[EvalInterval], gt: list[EvalInterval], kind: str, ap_ranking: str = "score"):
    """TP count, predictions, ground-truth count and, per AP threshold, (scores, TP flags)."""
    released = ap_ranking == "released"
    preds, gts = _group(pred, kind), _group(gt, kind)
    tp = n_pred = n_gt = 0
    ranked: dict[float, tuple[list[float | None], list[bool]]] = {t: ([], []) for t in IOU_THRESHOLDS}
    for video in sorted(set(preds) | set(gts)):
        p = sorted(preds.get(video, []), key=lambda it: (it.onset, it.offset))
        g = [(it.onset, it.offset) for it in gts.get(video, [])]
        n_pred += len(p)
        n_gt += len(g)
        tp += sum(match_video([(it.onset, it.offset) for it in p], g))
        if not released and any(it.score is None for it in p):
            continue
        by_score = p if released else sorted(p, key=lambda it: -it.score)  # stable: onset order on ties
        for t in IOU_THRESHOLDS:
            flags = match_video([(it.onset, it.offset) for it in by_score], g, threshold=t)
            ranked[t][0].extend(0.0 if released else it.score for it in by_score)
            ranked[t][1].extend(flags)
    has_scores = released or all(it.score is not None for it in pred if it.type == kind)
    return tp, n_pred, n_gt, ranked if has_scores else None


def _scores(tp: int, n_pred: int, n_gt: int, ranked) -> Scores:
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_gt)
    f1 = _ratio(2 * precision * recall, precision + recall)
    ap = None
    if ranked is not None:
        ap = float(np.mean([average_precision(*ranked[t], n_gt) for t in IOU_THRESHOLDS]))
    return Scores(tp, n_pred - tp, n_gt - tp, precision, recall, f1, ap)


def evaluate(predictions: Iterable, ground_truth: Iterable, *, ap_ranking: str = "score") -> EvaluationResult:
    """Evaluate spotted intervals against ground truth over a whole dataset.

    Args:
        predictions: objects with ``video, onset, offset, type`` and optionally ``score``
            (e.g. :class:`EvalInterval`); 0-based inclusive frames; type 'macro' or 'micro'.
        ground_truth: the same without score (a score is ignored).
        ap_ranking: "score" (intervals ranked by their score, the usual detection AP) or
            "released" (every interval confidence 0, as the released notebook; see the module
            docstring). P, R and F1 do not depend on it.

    Returns:
        :class:`EvaluationResult` with macro, micro and overall :class:`Scores`.

    Raises:
        SpotnetError: unknown type, onset > offset, negative frame or non-finite score.
    """
    if ap_ranking not in AP_RANKINGS:
        raise SpotnetError(f"ap_ranking should be one of {', '.join(AP_RANKINGS)}, got {ap_ranking!r}")
    pred = _check_intervals(predictions, "prediction")
    gt = _check_intervals(ground_truth, "ground-truth")
    per_type = {kind: _type_matches(pred, gt, kind, ap_ranking) for kind in TYPES}
    result = {kind: _scores(*per_type[kind]) for kind in TYPES}
    tp, n_pred, n_gt = (sum(per_type[kind][i] for kind in TYPES) for i in range(3))
    rankings = [per_type[kind][3] for kind in TYPES]
    pooled = None
    if all(r is not None for r in rankings):
        macro, micro = rankings
        pooled = {t: (macro[t][0] + micro[t][0], macro[t][1] + micro[t][1]) for t in IOU_THRESHOLDS}
    return EvaluationResult(result["macro"], result["micro"], _scores(tp, n_pred, n_gt, pooled))


def read_intervals_csv(path: str | Path) -> list[EvalInterval]:
    """Read a CSV of intervals (1-based inclusive frames) into 0-based :class:`EvalInterval` s.

    Columns: ``video, onset, offset, type`` (macro|micro, case-insensitive) and an optional
    ``score`` (an empty cell means no score). Other columns are ignored.

    Raises:
        SpotnetError: missing file or column, non-integer frame, onset < 1, onset > offset,
            unknown type or non-numeric score; the message names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise SpotnetError(f"interval CSV should be an existing file, got {path} (no such file)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        raise SpotnetError(
            f"interval CSV {path} should be a readable UTF-8 text file, got an unreadable file"
        ) from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        raise SpotnetError(
            f"interval CSV {path} should have columns {', '.join(CSV_COLUMNS)}, "
            f"got {', '.join(columns) or 'no header'} (missing {', '.join(missing)})"
        )
    reader.fieldnames = columns
    out = []
    for row in reader:
        line = reader.line_num
        where = f"{path} line {line}"
        try:
            onset, offset = int(row["onset"]), int(row["offset"])
        except (TypeError, ValueError):
            raise SpotnetError(
                f"onset and offset should be integers, got {row['onset']!r} and {row['offset']!r} at {where}"
            ) from None
        if onset < 1 or onset > offset:
            raise SpotnetError(
                f"interval should have 1 <= onset <= offset (1-based), got ({onset}, {offset}) at {where}"
            )
        kind = (row["type"] or "").strip().lower()
        if kind not in TYPES:
            raise SpotnetError(f"type should be 'macro' or 'micro', got {row['type']!r} at {where}")
        score = None
        raw = (row.get("score") or "").strip()
        if raw:
            try:
                score = float(raw)
            except ValueError:
                raise SpotnetError(f"score should be a number, got {raw!r} at {where}") from None
            if not math.isfinite(score):
                raise SpotnetError(f"score should be finite, got {raw!r} at {where}")
        out.append(EvalInterval((row["video"] or "").strip(), onset - 1, offset - 1, kind, score))
    return out


def write_intervals_csv(path: str | Path, intervals: Iterable) -> None:
    """Write intervals (0-based in memory) as a 1-based CSV, atomically; score when present."""
    path = Path(path)
    rows = list(intervals)
    with_score = any(getattr(it, "score", None) is not None for it in rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (("score",) if with_score else ()))
    for it in rows:
        row = [it.video, it.onset + 1, it.offset + 1, it.type]
        if with_score:
            score = getattr(it, "score", None)
            row.append("" if score is None else repr(float(score)))
        writer.writerow(row)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(buf.getvalue())


def evaluate_csv(predictions_csv: str | Path, ground_truth_csv: str | Path, *,
                 ap_ranking: str = "score") -> EvaluationResult:
    """:func:`evaluate` on two interval CSV files.

    Raises:
        SpotnetError: both files list intervals but share no video name (mismatched files, or
            names spelt differently): every interval would silently count as FP or FN.
    """
    pred, gt = read_intervals_csv(predictions_csv), read_intervals_csv(ground_truth_csv)
    pred_videos, gt_videos = {it.video for it in pred}, {it.video for it in gt}
    if pred_videos and gt_videos and not pred_videos & gt_videos:
        raise SpotnetError(
            f"{predictions_csv} and {ground_truth_csv} should name the same videos, got none in common "
            f"(e.g. {sorted(pred_videos)[0]!r} vs {sorted(gt_videos)[0]!r})"
        )
    return evaluate(pred, gt, ap_ranking=ap_ranking)
