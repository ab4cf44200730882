"""Where an extraction's time went: named stage timings, summed over units, threads and workers.

Engines (:mod:`flowkit.pipeline.engines`) and units (:mod:`flowkit.pipeline.units`) add seconds to a
:class:`StageTimes`; :class:`flowkit.pipeline.extract.ExtractionReport` carries the sums as ``stages``
(a dict of the keys below) and prints them in its summary and in ``flowkit extract --json``.

Worker-seconds add up the time of every process or thread doing a stage, so with N decoders
``decode_s`` can be N times the wall time; ``decode_wall_s`` is the wall time during which at
least one decoder was decoding (the batched engine, whose decoders do nothing else).
"""

from __future__ import annotations

import threading

__all__ = ["STAGES", "StageTimes", "format_stages", "union_seconds"]

#: key -> what it measures, in the order the summary shows them.
STAGES = {
    "prepare_s": "the driver preparing: faces, frame counts, store entries, plans",
    "decode_s": "decoding and cropping frames, worker-seconds",
    "decode_wall_s": "decoding and cropping, wall seconds with at least one decoder busy",
    "upload_s": "stacking crop pairs and copying them host-to-device",
    "solve_s": "TV-L1",
    "features_s": "strain, head-motion correction, eye mask and ROI features",
    "download_s": "device-to-host copies of features (and flow)",
    "write_s": "writing chunks, worker-seconds",
    "engine_wall_s": "wall seconds of the engine running units",
    "solver_idle_share": "share of the solvers' wall time not solving",
}


class StageTimes:
    """Thread-safe sums of seconds per stage key (keys of :data:`STAGES`)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        with self._lock:
            self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def merge(self, other: dict) -> None:
        """Add a dict of stage seconds (a unit's ``UnitResult.stages``)."""
        for key, seconds in other.items():
            self.add(key, seconds)

    def as_dict(self, *, solvers: int = 1) -> dict:
        """The sums rounded to ms, in :data:`STAGES` order, with ``solver_idle_share`` for
        ``solvers`` solving processes or threads over ``engine_wall_s``."""
        with self._lock:
            out = {k: round(self.seconds[k], 3) for k in STAGES if k in self.seconds}
        wall = out.get("engine_wall_s")
        if wall:
            out["solver_idle_share"] = round(max(0.0, 1 - out.get("solve_s", 0.0) / (solvers * wall)), 3)
        return out


def union_seconds(intervals) -> float:
    """Total length of the union of (start, end) intervals.

    >>> union_seconds([(0, 2), (1, 3), (5, 6)])
    4
    """
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def format_stages(stages: dict) -> str:
    """One line for the end summary, e.g. "stages: prepare 1.2 s, decode+crop 8.0 worker-s ..."."""
    if not stages:
        return ""
    parts = []
    if "prepare_s" in stages:
        parts.append(f"prepare {stages['prepare_s']:.1f} s")
    if "decode_s" in stages:
        wall = f" (wall {stages['decode_wall_s']:.1f} s)" if "decode_wall_s" in stages else ""
        parts.append(f"decode+crop {stages['decode_s']:.1f} worker-s{wall}")
    for key, label in (("upload_s", "host-to-device"), ("solve_s", "solve"), ("features_s", "features"),
                       ("download_s", "device-to-host"), ("write_s", "write")):
        if key in stages:
            parts.append(f"{label} {stages[key]:.1f} s")
    if "engine_wall_s" in stages:
        parts.append(f"engine wall {stages['engine_wall_s']:.1f} s")
    if "solver_idle_share" in stages:
        parts.append(f"solver idle {100 * stages['solver_idle_share']:.0f} %")
    return "stages: " + ", ".join(parts)
