"""Reading frames from a video file or an image-sequence folder, and finding the inputs under a path.

Every frame comes out as an (H, W, 3) uint8 BGR array, whatever the file holds (gray, RGBA,
16-bit images are converted).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from flowkit.errors import FlowkitError
from flowkit.native_logs import quiet_ffmpeg

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

__all__ = [
    "DATA_ERRORS",
    "VIDEO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "FrameSource",
    "VideoFileSource",
    "ImageFolderSource",
    "VideoInput",
    "natural_key",
    "open_source",
    "discover_videos",
    "read_image_files",
    "to_bgr8",
]

quiet_ffmpeg()  # a damaged file is reported once by flowkit, not once per packet by FFmpeg

#: Errors that mean one video's data is unusable (unreadable, no face, corrupt): the video is
#: reported as failed and the others go on.
#: ValueError is not among them: from our own code it is a bug, and the run stops.
DATA_ERRORS = (FlowkitError, OSError, cv2.error)

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str | os.PathLike) -> tuple:
    """Sort key that orders embedded numbers by value, so ``img2`` comes before ``img10``.

    >>> sorted(["img10.jpg", "img2.jpg", "img1.jpg"], key=natural_key)
    ['img1.jpg', 'img2.jpg', 'img10.jpg']
    """
    parts = _DIGITS.split(str(name))
    # (0, int) for numbers and (1, str) for text keep every comparison between same types; the
    # name itself breaks ties (img01 vs img1, IMG vs img) so the order is total and deterministic.
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts) + ((2, str(name)),)


def to_bgr8(image: np.ndarray, *, keep_gray: bool = False) -> np.ndarray:
    """Convert an image as read by ``cv2.imread(..., IMREAD_UNCHANGED)`` to (H, W, 3) uint8 BGR.

    Accepts (H, W) gray, (H, W, 1), (H, W, 3) BGR and (H, W, 4) BGRA, in uint8 or uint16
    (16-bit values are divided by 257, which maps 65535 to 255, and rounded). With ``keep_gray``
    a one-channel image stays (H, W) uint8: converting it to BGR and back to gray (what a crop
    does) gives the same bits, since OpenCV's gray weights sum to one exactly.
    """
    if image.dtype == np.uint16:
        image = np.rint(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FlowkitError(f"image dtype should be uint8 or uint16, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return image if keep_gray else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise FlowkitError(f"image should have 1, 3 or 4 channels, got shape {image.shape}")


class FrameSource:
    """Frames of one video, in order: iterating yields (H, W, 3) uint8 BGR arrays.

    Attributes:
        path: the video file or image folder.
        fps: frames per second from the video header; for image folders the ``fps`` given to
            :func:`open_source` (None by default).
        n_frames: the number of frames announced before decoding. Exact for image folders. For
            video files it is the container header's count, which can be wrong (no_face.mp4
            says 98, 95 decode). Counting by decoding would read the whole video twice, so
            consumers that need the true count should count while iterating.
    """

    path: Path
    fps: float | None
    n_frames: int

    def __iter__(self) -> Iterator[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, fps={self.fps}, n_frames={self.n_frames})"

    def planned_frames(self) -> int:
        """The frame count to plan work units with, found without decoding: exact for image
        folders; for video files the packets of the stream (a unit that finds fewer frames
        says so, and the video is then read sequentially)."""
        return self.n_frames


class VideoFileSource(FrameSource):
    """A video file read with ``cv2.VideoCapture``.

    A truncated or corrupt file is read up to its last decodable frame, then iteration stops
    with a ``UserWarning`` when fewer frames came out than the header announced. A file that
    cannot be opened at all (for example cut before its index) raises :class:`FlowkitError`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                raise FlowkitError(
                    f"video file should be readable by OpenCV, got {str(self.path)!r} which could not be "
                    "opened (corrupt, truncated or unsupported codec)"
                )
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and fps > 0 else None
            self.n_frames = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            ok, frame = cap.read()
            if not ok or frame is None:
                raise FlowkitError(
                    f"video file should contain at least one decodable frame, got none in {str(self.path)!r}"
                )
            self.height, self.width = frame.shape[:2]
        finally:
            cap.release()

    def planned_frames(self) -> int:
        index = self.index
        return index.n_frames if index is not None else self.n_frames

    @property
    def index(self):
        """The :class:`flowkit.io.video_index.VideoIndex` (demux only, cached), or None when frames
        cannot be numbered by timestamp."""
        if not hasattr(self, "_index"):
            from flowkit.io.video_index import index_video

            self._index = index_video(self.path)
        return self._index

    def __iter__(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        count = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                count += 1
                yield to_bgr8(frame)
        finally:
            cap.release()
        if count < self.n_frames:
            warnings.warn(
                f"{self.path}: the header announces {self.n_frames} frames but only {count} could be "
                "decoded; using those",
                UserWarning,
                stacklevel=2,
            )


class ImageFolderSource(FrameSource):
    """A folder of images (jpg, jpeg, png, bmp), one frame per file, in natural order.

    Gray, RGBA and 16-bit images are converted to 8-bit BGR. An image that cannot be decoded
    or whose size differs from the first one raises :class:`FlowkitError` naming the file.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        self.path = Path(path)
        self.files = _image_files(self.path)
        if not self.files:
            raise FlowkitError(
                f"image folder should contain {', '.join(IMAGE_EXTENSIONS)} files, got none in {str(self.path)!r}"
            )
        self.fps = fps
        self.n_frames = len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in read_image_files(self.files):
            yield frame


def read_image_files(files, first: int = 0, *, shape: tuple | None = None,
                     keep_gray: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(first + n, (H, W, 3) uint8 BGR) for each of ``files``; every image must have ``shape``
    (default: the first one's; only its height and width are compared).

    With ``keep_gray`` a one-channel image (a grayscale JPEG: libjpeg decodes it as one channel)
    comes as (H, W) uint8 gray, which :func:`flowkit.face.crop.crop_face` crops to the same bits as its
    BGR conversion; the units' decoders read so.
    """
    for i, f in enumerate(files, start=first):
        image = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise FlowkitError(f"image file should be a readable image, got {str(f)!r} which could not be decoded")
        frame = to_bgr8(image, keep_gray=keep_gray)
        if shape is None:
            shape = frame.shape
        elif frame.shape[:2] != tuple(shape)[:2]:
            raise FlowkitError(
                f"images of a sequence should all have size {shape[1]}x{shape[0]}, got "
                f"{frame.shape[1]}x{frame.shape[0]} in {str(f)!r}"
            )
        yield i, frame


def _image_files(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise FlowkitError(f"folder should be readable, got {str(folder)!r}: {exc.strerror or exc}") from None
    files = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def open_source(path: str | os.PathLike, *, fps: float | None = None) -> FrameSource:
    """Open a video file (mp4, avi, mov, mkv) or an image-sequence folder.

    Args:
        path: the video file or the folder holding one image per frame.
        fps: frame rate for image folders (they carry none); ignored for video files.

    Returns:
        A :class:`FrameSource`; iterating it yields (H, W, 3) uint8 BGR frames.

    Raises:
        FlowkitError: the path does not exist, is not a supported video or image folder, or
            cannot be read.
    """
    p = Path(path)
    if not p.exists():
        raise FlowkitError(f"input path should exist, got {str(p)!r} which does not")
    if p.is_dir():
        return ImageFolderSource(p, fps=fps)
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        if not os.access(p, os.R_OK):
            raise FlowkitError(f"video file should be readable, got {str(p)!r} without read permission")
        return VideoFileSource(p)
    raise FlowkitError(
        f"input should be a video file ({', '.join(VIDEO_EXTENSIONS)}) or an image folder, got {str(p)!r}"
    )


@dataclass(frozen=True)
class VideoInput:
    """One video found by :func:`discover_videos`.

    video_id: unique, deterministic name usable as a store group name (no '/').
    path: the video file or image folder to pass to :func:`open_source`.
    subject: the subject for leave-one-subject-out splits.
    """

    video_id: str
    path: Path
    subject: str


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CAS_SUBJECT = re.compile(r"^s\d+$", re.IGNORECASE)


def _safe_id(name: str) -> str:
    out = _UNSAFE.sub("_", name).strip("_")
    out = out.lstrip(".")
    return out or "video"


def _describe(seq_or_file: Path, root: Path) -> tuple[str, str]:
    """(video_id, subject) for one input, from the dataset layouts we know."""
    stem = seq_or_file.stem if seq_or_file.is_file() else seq_or_file.name
    parent = seq_or_file.parent
    if _CAS_SUBJECT.match(parent.name):
        # CAS(ME)^2: rawpic/sNN/<video>/img001.jpg, or rawvideo/sNN/<video>.avi
        subject = parent.name.lower()
        return _safe_id(f"{subject}_{stem}"), subject
    if seq_or_file.is_dir() and "_" in stem:
        # SAMM-LV: <subject>_<video>/<...>_NNNN.jpg
        return _safe_id(stem), _safe_id(stem.split("_", 1)[0])
    try:
        rel = seq_or_file.relative_to(root)
        parts = list(rel.parts)
    except ValueError:
        parts = []
    if not parts or parts == ["."]:
        parts = [stem]
    else:
        parts[-1] = stem
    vid = _safe_id("_".join(parts))
    return vid, vid


def discover_videos(root: str | os.PathLike) -> list[VideoInput]:
    """Find the videos under ``root``.

    ``root`` may be a single video file, a single image folder, or a directory walked
    recursively for video files and image-sequence folders (a folder holding image files);
    hidden folders are skipped.
    Known layouts give the subject:

    - CAS(ME)^2 ``rawpic/sNN/<video>/img001.jpg`` (or ``rawvideo/sNN/<video>.avi``): subject
      ``sNN``, video_id ``sNN_<video>``. A folder holding both ``rawpic/`` and ``rawvideo/`` (the
      dataset as distributed: the same videos twice) gives the image sequences of ``rawpic/``,
      which the released code reads, with a warning; ``rawvideo/`` is not read.
    - SAMM-LV ``<subject>_<video>/*.jpg``: subject is the part before the first '_',
      video_id the folder name.
    - anything else: video_id is the path relative to ``root`` (without extension) with
      separators turned into '_', and each video is its own subject.

    Symbolic links are followed; a file or folder reached twice is one video, found where the
    walk meets it first. Characters other than letters, digits, '.', '_' and '-' become '_'. Clashing ids get a
    ``_2``, ``_3``, ... suffix in walk order. The order is natural sort of the paths, so the
    result is deterministic.

    Returns:
        list of :class:`VideoInput`, possibly empty for a directory with no video in it.
    """
    root_p = Path(root)
    if not root_p.exists():
        raise FlowkitError(f"input path should exist, got {str(root_p)!r} which does not")
    found: list[Path] = []
    if root_p.is_file():
        if root_p.suffix.lower() not in VIDEO_EXTENSIONS:
            raise FlowkitError(
                f"input file should be a video ({', '.join(VIDEO_EXTENSIONS)}), got {str(root_p)!r}"
            )
        found.append(root_p)
        base = root_p.parent
    else:
        base = root_p
        found = _walk(root_p)
    inputs: list[VideoInput] = []
    used: set[str] = set()
    for p in _distinct(found):
        vid, subject = _describe(p, base if p != base else base.parent)
        unique, n = vid, 1
        while unique in used:
            n += 1
            unique = f"{vid}_{n}"
        used.add(unique)
        inputs.append(VideoInput(unique, p, subject))
    return inputs


def _walk(root: Path) -> list[Path]:
    """Image folders and video files under ``root``, in natural order; linked folders are
    followed, each real folder walked once (a link back up the tree ends there)."""
    found: list[Path] = []
    walked: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        d = Path(dirpath)
        if d.resolve() in walked:
            dirnames[:] = []
            continue
        walked.add(d.resolve())
        # hidden folders (.git, .cache, ...) never hold dataset videos
        dirnames[:] = sorted((n for n in dirnames if not n.startswith(".")), key=natural_key)
        if "rawpic" in dirnames and "rawvideo" in dirnames:
            dirnames.remove("rawvideo")
            warnings.warn(f"{d} holds both rawpic/ and rawvideo/ (CAS(ME)^2 as distributed, the same videos "
                          "twice): using the image sequences in rawpic/, as the released code does", UserWarning,
                          stacklevel=3)
        names = sorted(filenames, key=natural_key)
        if any(Path(n).suffix.lower() in IMAGE_EXTENSIONS for n in names):
            found.append(d)
        found.extend(d / n for n in names if Path(n).suffix.lower() in VIDEO_EXTENSIONS)
    return found


def _distinct(paths: list[Path]) -> list[Path]:
    """``paths`` without a second way (a symbolic link) to a file or folder already listed."""
    seen: set[Path] = set()
    out = []
    for p in paths:
        real = p.resolve()
        if real not in seen:
            seen.add(real)
            out.append(p)
    return out
