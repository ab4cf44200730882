"""Progress of an extraction run: a bar over the videos while they are prepared, then one in pairs.

:func:`flowkit.pipeline.extract.extract` prepares every video first (reference face, frame count; no full
decode), so the pairs bar knows its exact total from the start and its rate and ETA cover the
whole run, whichever videos the engine's workers are on.
"""

from __future__ import annotations

__all__ = ["ProgressBars"]


class ProgressBars:
    """tqdm bars: :meth:`preparing` counts videos, :meth:`pairs` counts computed pairs of the run.

    With ``enabled`` False every method does nothing.
    """

    def __init__(self, enabled: bool, n_videos: int):
        self.enabled = enabled
        self.n_videos = n_videos
        self.done = 0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.bar = tqdm(total=n_videos, unit="video", desc="preparing", dynamic_ncols=True)

    def prepared(self) -> None:
        """One more video prepared."""
        if self.bar is not None:
            self.bar.update(1)

    def add_pairs(self, total: int) -> None:
        """Start (or extend) the pairs bar: ``total`` more pairs are planned."""
        if not self.enabled:
            return
        if self.bar is not None and self.bar.unit == "video":
            self.bar.close()
            self.bar = self._tqdm(total=0, unit="pair", desc=self._desc(), dynamic_ncols=True)
        self.bar.total += total
        self.bar.refresh()

    def pairs(self, n: int) -> None:
        """Count ``n`` more computed pairs."""
        if self.bar is not None and self.bar.unit == "pair":
            self.bar.update(n)

    def video_done(self) -> None:
        self.done += 1
        if self.bar is not None and self.bar.unit == "pair":
            self.bar.set_description(self._desc())

    def _desc(self) -> str:
        return f"videos {self.done}/{self.n_videos}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
