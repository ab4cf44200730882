"""Native libraries' log lines (MediaPipe / TFLite, FFmpeg) kept off the terminal unless asked for.

MediaPipe and TFLite log through glog/absl straight to file descriptor 2 ("Created TensorFlow
Lite XNNPACK delegate", "Feedback manager requires ..."), and FFmpeg prints a line per damaged
packet; none of it is for the user, whose stderr should read one sentence per problem. Set
``FLOWKIT_VERBOSE=1`` (``--verbose`` on the command line) to see them again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["VERBOSE_ENV", "native_stderr_silenced", "quiet_ffmpeg", "verbose"]

VERBOSE_ENV = "FLOWKIT_VERBOSE"


def verbose() -> bool:
    """Whether native log lines should reach stderr (``FLOWKIT_VERBOSE`` set and not "0")."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_ffmpeg() -> None:
    """Silence FFmpeg inside OpenCV (read when a capture opens) unless verbose or already chosen."""
    if not verbose():
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (Python's own stderr is flushed first).

    Only for short native calls on the main thread: whatever else writes to fd 2 meanwhile is
    lost too.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
