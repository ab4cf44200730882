"""Face landmarks in the dlib 68-point scheme, from MediaPipe or dlib."""

from flowkit.landmarks.face import Face

__all__ = ["Face", "make_landmarker"]


def make_landmarker(backend: str = "mediapipe", *, model_path=None, **kwargs):
    """A landmarker with ``.detect(image_bgr) -> Face | None``; backend "mediapipe" or "dlib".

    ``model_path`` is MediaPipe's ``face_landmarker.task`` (None: looked up as the README says);
    dlib's model comes with its package, so the dlib backend ignores it.
    """
    if backend == "mediapipe":
        from flowkit.landmarks.mediapipe_backend import MediaPipeLandmarker

        return MediaPipeLandmarker(model_path, **kwargs)
    if backend == "dlib":
        from flowkit.landmarks.dlib_backend import DlibLandmarker

        return DlibLandmarker(**kwargs)
    from flowkit.errors import FlowkitError

    raise FlowkitError(f"landmark backend should be 'mediapipe' or 'dlib', got {backend!r}")
