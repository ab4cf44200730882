"""Locating the MediaPipe Face Landmarker model file (download on first use, sha256-checked)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from flowkit.errors import FlowkitError

MODEL_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
    "face_landmarker.task"
)
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODEL_NAME = "face_landmarker.task"
ENV_VAR = "FLOWKIT_MEDIAPIPE_MODEL"

__all__ = ["MODEL_URL", "MODEL_SHA256", "ENV_VAR", "cache_dir", "resolve_mediapipe_model", "sha256_of"]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/flowkit`` when that variable is set, else ``~/.cache/flowkit``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "flowkit"


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` into ``dest`` (tests replace this function to stay offline)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        while block := response.read(1 << 20):
            f.write(block)


def resolve_mediapipe_model(path: str | os.PathLike | None = None) -> Path:
    """Path of the Face Landmarker ``.task`` file.

    Looked up in this order:
    1. ``path`` when given (it must exist);
    2. the environment variable ``FLOWKIT_MEDIAPIPE_MODEL`` (it must exist);
    3. the user cache, ``cache_dir() / "face_landmarker.task"``, when its sha256 matches;
    4. a download from MediaPipe's official URL into the user cache, checked against
       ``MODEL_SHA256``; a mismatching file is deleted.

    Raises:
        FlowkitError: a given path is missing, the download fails (offline machines should
            set FLOWKIT_MEDIAPIPE_MODEL) or its checksum is wrong.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FlowkitError(f"MediaPipe model path should be an existing .task file, got {str(p)!r}")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise FlowkitError(f"{ENV_VAR} should name an existing .task file, got {env!r}")
        return p
    target = cache_dir() / MODEL_NAME
    if target.is_file() and sha256_of(target) == MODEL_SHA256:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowkitError(
            f"cache folder should be writable, got {str(target.parent)!r} ({exc.strerror or exc}); "
            f"set {ENV_VAR} to a local copy of {MODEL_NAME}"
        ) from None
    partial = target.with_suffix(".task.part")
    try:
        _download(MODEL_URL, partial)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise FlowkitError(
            f"the MediaPipe face model should be downloadable from {MODEL_URL}, got an error ({exc}); "
            f"on an offline machine set {ENV_VAR} to a local copy of {MODEL_NAME}"
        ) from None
    digest = sha256_of(partial)
    if digest != MODEL_SHA256:
        partial.unlink(missing_ok=True)
        raise FlowkitError(
            f"downloaded {MODEL_NAME} should have sha256 {MODEL_SHA256}, got {digest}; the file was deleted"
        )
    os.replace(partial, target)
    return target
