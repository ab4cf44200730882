"""JPEG decoding per core: a full decode against what the units' decoders do (decode and crop).

Frames of CAS(ME)^2's size (640x480) and SAMM-LV's (2040x1088), colour and grayscale JPEGs
(quality 90): frames of the shared face video scaled to the size, or synthetic texture frames
(tools/gpu/engine_check.py) where ../shared is absent. One OpenCV thread, so 1 / median seconds
is frames/s per core. Methods:

- ``full_colour``: ``cv2.imread(IMREAD_COLOR)``, the whole frame decoded to BGR;
- ``full_gray``: ``cv2.imread(IMREAD_GRAYSCALE)``, the whole frame decoded to gray;
- ``decoders_bgr``: the units' reading with every frame made BGR (``to_bgr8``), then cropped
  (``crop_face``): what the decoders did before grayscale JPEGs stayed gray;
- ``decoders``: what the decoders do (``read_image_files(keep_gray=True)``, then ``crop_face``).

Run:
    pytest benchmarks/bench_decode.py --benchmark-only -s \
        --benchmark-json=benchmarks/results/decode_cpu_<machine>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
VIDEO = (REPO / ".." / "shared" / "data" / "WolfgangLanger_Pexels.mp4").resolve()
SIZES = {"640x480": (640, 480), "2040x1088": (2040, 1088)}
FRAMES = 8
BOX_SHARE = (0.35, 0.2, 0.65, 0.75)  # the face box as shares of the frame (x0, y0, x1, y1)


def _source_frames(width: int, height: int) -> tuple[list[np.ndarray], str]:
    if VIDEO.is_file():
        cap = cv2.VideoCapture(str(VIDEO))
        frames = []
        while len(frames) < FRAMES:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC))
        cap.release()
        if len(frames) == FRAMES:
            return frames, VIDEO.name
    sys.path.insert(0, str(REPO / "tools" / "gpu"))
    import tempfile

    import engine_check

    with tempfile.TemporaryDirectory() as tmp:
        (folder,) = engine_check.write_inputs(Path(tmp), 1, FRAMES, (width, height), False, processes=1)
        frames = [cv2.imread(str(folder / f"img{i + 1}.jpg")) for i in range(FRAMES)]
    return frames, "synthetic texture"


@pytest.fixture(scope="module", params=[(s, g) for s in SIZES for g in ("colour", "gray")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def jpegs(request, tmp_path_factory):
    size, kind = request.param
    width, height = SIZES[size]
    frames, source = _source_frames(width, height)
    folder = tmp_path_factory.mktemp(f"jpeg_{size}_{kind}")
    files = []
    for i, frame in enumerate(frames):
        if kind == "gray":
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        path = folder / f"img{i + 1}.jpg"
        cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        files.append(str(path))
    box = tuple(int(s * d) for s, d in zip(BOX_SHARE, (width, height, width, height)))
    return size, kind, files, box, source


def _methods(box):
    from flowkit.face.crop import crop_face
    from flowkit.io.sources import read_image_files, to_bgr8

    return {
        "full_colour": lambda f: cv2.imread(f, cv2.IMREAD_COLOR),
        "full_gray": lambda f: cv2.imread(f, cv2.IMREAD_GRAYSCALE),
        "decoders_bgr": lambda f: crop_face(to_bgr8(cv2.imread(f, cv2.IMREAD_UNCHANGED)), box),
        "decoders": lambda f: crop_face(next(read_image_files([f], keep_gray=True))[1], box),
    }


@pytest.mark.parametrize("method", ["full_colour", "full_gray", "decoders_bgr", "decoders"])
def test_decode(benchmark, jpegs, method):
    size, kind, files, box, source = jpegs
    fn = _methods(box)[method]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        state = {"n": 0}

        def one():
            out = fn(files[state["n"] % len(files)])
            state["n"] += 1
            return out

        out = benchmark.pedantic(one, rounds=40, iterations=1, warmup_rounds=4)
    finally:
        cv2.setNumThreads(threads)
    assert out is not None and out.dtype == np.uint8
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(size=size, jpeg=kind, method=method, frames_source=source, opencv_threads=1,
                                opencv=cv2.__version__, frames_per_s_per_core=round(1 / median, 1))
    print(f"\n{size} {kind} JPEG, {method}: {1e3 * median:.2f} ms, {1 / median:.1f} frames/s per core")


def table(path: Path) -> str:
    """The Markdown table of a --benchmark-json file of this suite: frames/s per core."""
    rows: dict = {}
    for bench in json.loads(Path(path).read_text())["benchmarks"]:
        info = bench["extra_info"]
        rows.setdefault((info["size"], info["jpeg"]), {})[info["method"]] = info["frames_per_s_per_core"]
    methods = ["full_colour", "full_gray", "decoders_bgr", "decoders"]
    lines = ["| JPEG | " + " | ".join(methods) + " |", "|" + " --- |" * (len(methods) + 1)]
    for (size, kind), by in rows.items():
        lines.append(f"| {size} {kind} | " + " | ".join(str(by.get(m, "-")) for m in methods) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
