"""Preparing a video in the driver before any unit runs (SPEC 1): its inputs found, the reference
face, crop box and crop landmarks (decoding only up to the reference frame), the frame count from
the listing or packet index, and its store entry; a video prepared by an earlier run is taken from
the store after checking it was made the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowkit.errors import FlowkitError
from flowkit.io.store import FeatureStore
from flowkit.pipeline.settings import ExtractionSettings
from flowkit.pipeline.units import UnitTask

__all__ = ["NoLandmarker", "PreparedVideo", "as_inputs", "describe_source", "prepare_video"]


def as_inputs(inputs) -> list:
    from flowkit.io.sources import VideoInput, discover_videos

    if isinstance(inputs, (str, os.PathLike, VideoInput)):
        inputs = [inputs]
    out = []
    for item in inputs:
        if isinstance(item, VideoInput):
            out.append(item)
        else:
            out.extend(discover_videos(item))
    real: set = set()  # one file reached twice (a symbolic link, two arguments) is one video
    out = [v for v in out if not (Path(v.path).resolve() in real or real.add(Path(v.path).resolve()))]
    seen = set()
    for v in out:
        if v.video_id in seen:
            raise FlowkitError(f"video ids should be unique in one store, got {v.video_id!r} twice")
        seen.add(v.video_id)
    return out


class _Frames:
    """One pass over a source that remembers frame 0 and the last frame read.

    It is its own iterator, so find_reference stops at the reference frame and nothing after it
    is decoded; ``path`` names the source in find_reference's error message.
    """

    def __init__(self, source):
        self.path = source.path
        self._it = iter(source)
        self.first = None
        self.last = None

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        frame = next(self._it)
        if self.first is None:
            self.first = frame
        self.last = frame
        return frame


class NoLandmarker:
    """Stands in for the landmarker when every video was prepared by an earlier run."""

    def detect(self, image):
        raise FlowkitError("a landmarker should be loaded for a video without a stored face, got none")

    def close(self) -> None:
        pass


@dataclass
class PreparedVideo:
    """A prepared video in the driver: what its units need, and what happened to it."""

    input: object
    intervals: list | None
    attrs: dict
    landmarks: np.ndarray
    files: list[str] | None = None
    index: object | None = None
    messages: list[str] = field(default_factory=list)
    failed: str | None = None
    pairs: int = 0

    @property
    def vid(self) -> str:
        return self.input.video_id

    @property
    def n_frames(self) -> int:
        return int(self.attrs["n_frames"])

    @property
    def sequential(self) -> bool:
        return self.attrs.get("reader") == "sequential"

    def task(self, unit, store_path: str) -> UnitTask:
        first, stop = unit.frames
        files = tuple(self.files[first:stop]) if self.files is not None and not unit.sequential else None
        index = self.index.window(first, stop) if self.index is not None and not unit.sequential else None
        shape = self.attrs.get("frame_shape")
        return UnitTask(unit, str(self.input.path), store_path, tuple(self.attrs["crop_box"]), self.landmarks,
                        files=files, index=index, frame_shape=tuple(shape) if shape else None,
                        jpeg=bool(self.attrs.get("as_released", False)))


def describe_source(source) -> tuple[str, list[str] | None, object | None]:
    """(reader, image files, video index) of an opened source: how its units find frames."""
    from flowkit.io.sources import ImageFolderSource

    if isinstance(source, ImageFolderSource):
        return "images", [str(f) for f in source.files], None
    index = source.index
    return ("seek" if index is not None else "sequential"), None, index


def first_pass(video, source, landmarker, landmark_backend: str, *, as_released: bool = False
                ) -> tuple[dict, np.ndarray]:
    """Reference face, crop box and crop landmarks ((68, 2) float32), decoding only up to the
    reference frame; the frame count from the listing or the packet index."""
    from flowkit.face.crop import CROP_CONVENTION, clamp_box, crop_face, crop_landmarks, find_reference

    frames = _Frames(source)
    reference, face = find_reference(frames, landmarker)
    ref_frame = frames.last
    h, w = ref_frame.shape[:2]
    box = clamp_box(face.box, w, h)
    points, _ = crop_landmarks(landmarker, crop_face(frames.first, box, jpeg=as_released), reference=face,
                               frame_shape=ref_frame.shape)
    reader, _, _ = describe_source(source)
    attrs = {
        "source": str(Path(video.path).resolve()),
        "n_frames": int(source.planned_frames()),
        "fps": source.fps,
        "crop_box": [int(v) for v in box],
        "reference_frame": int(reference),
        "landmark_backend": landmark_backend,
        "crop_convention": CROP_CONVENTION,
        "as_released": bool(as_released),
        # What the container promised; more than n_frames means a truncated or damaged file.
        "header_frames": int(source.n_frames or source.planned_frames()),
        "frame_shape": [int(v) for v in ref_frame.shape],
        "reader": reader,
    }
    return attrs, points


def prepare_video(video, intervals, store: FeatureStore, landmarker, settings: ExtractionSettings) -> PreparedVideo:
    """The video's store entry (made now, or found from an earlier run) and its readers."""
    from flowkit.io.sources import open_source

    vid = video.video_id
    source = open_source(video.path)
    subject = intervals[0].subject if intervals else video.subject
    ann = [iv.to_attr() for iv in sorted(intervals or [], key=lambda iv: (iv.onset, iv.offset))]
    attrs = store.video_attrs(vid) if store.has_video(vid) else {}
    if attrs.get("crop_box") is not None:  # prepared by an earlier run
        if attrs.get("source") != str(Path(video.path).resolve()):
            raise FlowkitError(f"video id {vid!r} is already in the store from {attrs.get('source')}, "
                               f"got another source {video.path}")
        if intervals is not None:
            store.set_video_attrs(vid, subject=subject, annotations=ann)
        check_crop_record(vid, attrs, store, settings)
        landmarks = store.landmarks(vid)
    else:
        attrs, landmarks = first_pass(video, source, landmarker, settings.landmark_backend,
                                       as_released=settings.as_released)
        attrs.update(subject=subject, annotations=ann)
        store.add_video(vid, attrs, landmarks)
    _, files, index = describe_source(source)
    if attrs.get("reader") == "sequential":  # an earlier round found it cannot be seeked
        index = None
    return PreparedVideo(video, intervals, dict(attrs), np.asarray(landmarks, np.float32), files, index)


def check_crop_record(vid: str, attrs: dict, store: FeatureStore, settings: ExtractionSettings) -> None:
    """Refuse to resume a video prepared with another crop convention or ``as_released``."""
    from flowkit.face.crop import CROP_CONVENTION

    made = (attrs.get("crop_convention", "older: box 1 px larger, gray before resize"),
            bool(attrs.get("as_released", False)))
    if made != (CROP_CONVENTION, settings.as_released):
        raise FlowkitError(f"store {store.path} holds video {vid!r} made with crop convention {made[0]!r} and "
                           f"as_released={made[1]}, got {CROP_CONVENTION!r} and as_released={settings.as_released}; "
                           f"write to a new store")
