"""Progress of an extraction run in frame pairs: tqdm bars and the per-video estimates behind them.

:func:`flowkit.extract.extract` shows one bar per video and one overall bar. The overall total
starts from :func:`estimated_pairs` and takes each video's exact count when the video is opened,
so its rate and ETA cover the whole run from the start.
"""

from __future__ import annotations

from flowkit.sources import DATA_ERRORS

__all__ = ["ProgressBars", "estimated_pairs"]

# What a video that extract will report as failed raises here (the same set as
# flowkit.extract's per-video failures); the estimate only counts it as 0 pairs.
_UNREADABLE = DATA_ERRORS


def estimated_pairs(videos, store, ks) -> dict[str, int]:
    """Pairs each video should still need, for the overall progress bar only.

    Frame counts come from the store when an earlier run recorded them, else from the container
    header (exact for image folders); a complete (video, k) counts 0, and so does a video that
    cannot be opened (its own turn reports why). Each video corrects its estimate when it is
    opened (:meth:`ProgressBars.start_video`).

    Args:
        videos: :class:`flowkit.sources.VideoInput` items.
        store: the open :class:`flowkit.store.FeatureStore`.
        ks: window lengths of the run.

    Returns:
        {video_id: pairs}, where a video of n frames needs n - k pairs per k < n.
    """
    from flowkit.sources import open_source

    out = {}
    for v in videos:
        known = store.has_video(v.video_id)
        try:
            n = int(store.video_attrs(v.video_id).get("n_frames") or 0) if known else open_source(v.path).n_frames
        except _UNREADABLE:
            n = 0
        out[v.video_id] = sum(max(0, n - k) for k in ks if not (known and store.is_complete(v.video_id, k)))
    return out


class ProgressBars:
    """tqdm bars counting pairs: one per video, one overall.

    The overall total starts from ``estimates`` ({video_id: pairs}) and takes each video's exact
    count in :meth:`start_video`; :meth:`video_done` takes back the estimate of a video that
    failed or had nothing to do. With ``enabled`` False every method does nothing.
    """

    def __init__(self, enabled: bool, n_videos: int, estimates: dict[str, int]):
        self.enabled = enabled
        self.n_videos = n_videos
        self.estimates = dict(estimates)
        self.index = 0
        self.overall = None
        self.video = None
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.overall = tqdm(total=sum(self.estimates.values()), unit="pair", desc=f"video 1/{n_videos}",
                                position=0, dynamic_ncols=True)

    def start_video(self, name: str, pairs: int):
        """Open the bar of video ``name``, which needs ``pairs`` pairs."""
        if self.enabled:
            self.overall.total += pairs - self.estimates.pop(name, 0)
            self.overall.refresh()
            self.video = self._tqdm(total=pairs, unit="pair", desc=name[:30], position=1, leave=False,
                                    dynamic_ncols=True)

    def pairs(self, n: int):
        """Count ``n`` more computed pairs."""
        if self.video is not None:
            self.video.update(n)
            self.overall.update(n)

    def video_done(self, name: str):
        """Close the video's bar (or drop its estimate) and move the overall bar to the next."""
        if self.video is not None:
            self.video.close()
            self.video = None
        if self.overall is not None and name in self.estimates:  # failed or had nothing to do
            self.overall.total -= self.estimates.pop(name)
            self.overall.refresh()
        self.index += 1
        if self.overall is not None and self.index < self.n_videos:
            self.overall.set_description(f"video {self.index + 1}/{self.n_videos}")

    def close(self):
        if self.overall is not None:
            self.overall.close()
