"""Test helpers: short image-sequence clips and video files cut from the shared videos."""

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


def write_video(video, path, n, fourcc="mp4v", fps=30.0):
    """The first ``n`` frames of ``video`` re-encoded into the video file ``path`` (cv2.VideoWriter)."""
    cap = cv2.VideoCapture(str(video))
    writer = None
    for _ in range(n):
        ok, frame = cap.read()
        assert ok, f"{video} has fewer than {n} frames"
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    cap.release()
    return path
