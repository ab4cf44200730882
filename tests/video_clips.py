"""Test helper: short image-sequence clips cut from the shared videos."""

from __future__ import annotations

import cv2


def write_frames(video, folder, n):
    """The first ``n`` frames of ``video`` as PNGs img1.png .. img<n>.png in ``folder``."""
    folder.mkdir(parents=True)
    cap = cv2.VideoCapture(str(video))
    for i in range(n):
        ok, frame = cap.read()
        assert ok, f"{video} has fewer than {n} frames"
        cv2.imwrite(str(folder / f"img{i + 1}.png"), frame)
    cap.release()
    return folder
