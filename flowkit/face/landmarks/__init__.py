"""Face landmarks in the dlib 68-point scheme, from MediaPipe or dlib, behind a small registry."""

from flowkit.face.landmarks.face import Face

__all__ = ["Face", "LANDMARK_BACKENDS", "make_landmarker"]


def _mediapipe(model_path=None, **kwargs):
    from flowkit.face.landmarks.mediapipe_backend import MediaPipeLandmarker

    return MediaPipeLandmarker(model_path, **kwargs)


def _dlib(model_path=None, **kwargs):
    from flowkit.face.landmarks.dlib_backend import DlibLandmarker

    return DlibLandmarker(**kwargs)  # its model comes with its package


#: name -> factory(model_path=None, **kwargs) of an object with ``.detect(image_bgr) -> Face | None``.
LANDMARK_BACKENDS = {"mediapipe": _mediapipe, "dlib": _dlib}


def make_landmarker(backend: str = "mediapipe", *, model_path=None, **kwargs):
    """A landmarker with ``.detect(image_bgr) -> Face | None``; backend "mediapipe" or "dlib".

    ``model_path`` is MediaPipe's ``face_landmarker.task`` (None: looked up as the README says);
    dlib's model comes with its package, so the dlib backend ignores it. A frame where no face is
    found and that is very wide or tall is searched again in tiles (:mod:`flowkit.face.landmarks.retry`).
    """
    factory = LANDMARK_BACKENDS.get(backend)
    if factory is None:
        from flowkit.errors import FlowkitError

        raise FlowkitError(f"landmark backend should be one of {', '.join(LANDMARK_BACKENDS)}, got {backend!r}")
    from flowkit.face.landmarks.retry import RetryingLandmarker

    return RetryingLandmarker(factory(model_path=model_path, **kwargs))
