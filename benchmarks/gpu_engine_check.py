"""One-shot GPU check of the extraction engine (BatchedEngine) end to end, as JSON.

GPU machines here have torch but no mediapipe, PyAV or zarr, and no shared data. So the inputs
travel in ``benchmarks/gpu_engine/`` (git-ignored, made on the CPU by ``--make-assets``): the
shared face video and its face (crop box and crop landmarks, found by flowkit with MediaPipe);
zarr comes as wheels (README, "Measuring on a GPU"). On the GPU the script writes JPEG folders cut
from the video, records each as already prepared in a fresh store (the box and landmarks above, as
an earlier run would have: no face detection there), and runs ``extract(gpu=True)`` on them. It reports:

- ``runs``: pairs/s end to end (decoding, cropping, TV-L1, features, Zarr writes) and the
  solver's idle fraction, for a few decoder counts;
- ``repeat_equal``: whether two runs with the same batches give bitwise equal features;
- ``batch_invariance``: for each step of the solver, whether a pair's result is bitwise the same
  alone and in a batch of 8 (on the CPU they all are).

Make the assets here:   python benchmarks/gpu_engine_check.py --make-assets
On the GPU machine:     python3 benchmarks/gpu_engine_check.py --out $OUT/gpu_engine_h200.json
Smoke run on the CPU:   python benchmarks/gpu_engine_check.py --smoke --out /tmp/gpu_engine_smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSETS = ROOT / "benchmarks" / "gpu_engine"
VIDEO = (ROOT / ".." / "shared" / "data" / "WolfgangLanger_Pexels.mp4").resolve()


def make_assets() -> None:
    """The face of frame 0 as flowkit finds it (needs mediapipe and ../shared), and the video."""
    from flowkit.face.crop import clamp_box, crop_face, crop_landmarks
    from flowkit.face.landmarks import make_landmarker
    from flowkit.io.sources import open_source

    ASSETS.mkdir(parents=True, exist_ok=True)
    frame = next(iter(open_source(VIDEO)))
    landmarker = make_landmarker("mediapipe", model_path=ROOT / ".." / "shared" / "models" / "face_landmarker.task")
    face = landmarker.detect(frame)
    box = clamp_box(face.box, frame.shape[1], frame.shape[0])
    points, _ = crop_landmarks(landmarker, crop_face(frame, box), reference=face, frame_shape=frame.shape)
    landmarker.close()
    shutil.copy(VIDEO, ASSETS / "video.mp4")
    (ASSETS / "face.json").write_text(json.dumps({"crop_box": [int(v) for v in box],
                                                  "landmarks": np.asarray(points).tolist()}))
    print(f"wrote {ASSETS}")


def write_videos(video: Path, root: Path, n_videos: int, frames: int) -> list[Path]:
    """``n_videos`` JPEG folders (CAS(ME)^2's layout) of ``frames`` frames each, cut from ``video``
    at different offsets so that each is its own face video."""
    import cv2

    from flowkit.io.sources import open_source

    decoded = list(open_source(video))
    step = max(1, (len(decoded) - frames) // max(1, n_videos - 1))
    folders = []
    for v in range(n_videos):
        folder = root / f"v{v}"
        folder.mkdir(parents=True)
        for i in range(frames):
            cv2.imwrite(str(folder / f"img{i + 1}.jpg"), decoded[min(v * step + i, len(decoded) - 1)])
        folders.append(folder)
    return folders


def prepared_store(path: Path, folders: list[Path], face: dict) -> None:
    """A store holding each folder as an earlier run's first pass would have left it."""
    import cv2

    from flowkit.io.store import FeatureStore

    with FeatureStore(path, mode="a") as store:
        for folder in folders:
            files = sorted(folder.iterdir(), key=lambda p: int(p.stem[3:]))
            shape = cv2.imread(str(files[0])).shape
            attrs = {"source": str(folder.resolve()), "n_frames": len(files), "fps": None,
                     "crop_box": face["crop_box"], "reference_frame": 0, "landmark_backend": "mediapipe",
                     "header_frames": len(files), "frame_shape": list(shape), "reader": "images",
                     "subject": folder.name, "annotations": []}
            store.add_video(folder.name, attrs, np.asarray(face["landmarks"], np.float32))


def run_extract(root: Path, folders, face, store: Path, *, smoke: bool, **options) -> dict:
    from flowkit.pipeline.extract import TEST_TVL1, extract

    prepared_store(store, folders, face)
    t0 = time.perf_counter()
    report = extract([root], store, ks=[6, 18], gpu=not smoke, flow_backend="torch",
                     flow_params=TEST_TVL1 if smoke else None, progress=False, **options)
    seconds = time.perf_counter() - t0
    assert report.ok, report.summary()
    return {"pairs": report.pairs, "seconds": round(seconds, 3), "pairs_per_s": round(report.pairs / seconds, 1),
            "engine": report.engine, **{k: v for k, v in options.items()}}


def batch_invariance(device) -> dict:
    """Each solver step on a batch of 8 against the first item alone: bitwise equal?"""
    import torch

    from flowkit.features.chain import features_from_flow
    from flowkit.flow.median import median_blur
    from flowkit.flow.pyramid import resize_linear
    from flowkit.flow.remap import remap_cubic
    from flowkit.flow.torch_tvl1 import centered_gradient, divergence, forward_gradient, tvl1_torch

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 1, 128, 128, generator=g) * 255).to(device)
    flow = (torch.randn(8, 2, 128, 128, generator=g) * 2).to(device)
    lm = np.asarray(json.loads((ASSETS / "face.json").read_text())["landmarks"], np.float32) \
        if (ASSETS / "face.json").is_file() else np.tile(np.linspace(20, 108, 68, dtype=np.float32)[:, None], (1, 2))
    grid_y, grid_x = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    map_x, map_y = grid_x.to(device) + flow[:, 0], grid_y.to(device) + flow[:, 1]

    def forward(t):
        gx, gy = torch.empty_like(t), torch.empty_like(t)
        forward_gradient(t, gx, gy)
        return torch.cat([gx, gy], 1)

    steps = {
        "median_blur": lambda t: median_blur(t, 5),
        "resize_linear": lambda t: resize_linear(t, (102, 102)),
        "remap_cubic": lambda t: remap_cubic(t, map_x[: len(t)], map_y[: len(t)]),
        "centered_gradient": lambda t: torch.cat(centered_gradient(t), 1),
        "forward_gradient": forward,
        "divergence": lambda t: divergence(t, t.flip(-1), torch.empty_like(t)),
        "features_from_flow": lambda t: features_from_flow(flow[: len(t)], lm),
        "tvl1_torch_1_iteration": lambda t: tvl1_torch(t[:, 0].to(torch.uint8), t[:, 0].flip(-1).to(torch.uint8),
                                                       nscales=1, warps=1, outer_iterations=1,
                                                       inner_iterations=1),
        "tvl1_torch_spec": lambda t: tvl1_torch(t[:, 0].to(torch.uint8), t[:, 0].roll(2, -1).to(torch.uint8)),
    }
    out = {}
    for name, fn in steps.items():
        try:
            a, b = fn(x)[:1], fn(x[:1])
            out[name] = {"equal": bool(torch.equal(a, b)), "max_abs": float((a.float() - b.float()).abs().max())}
        except Exception as exc:  # noqa: BLE001 - a report: one failing step must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make-assets", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("gpu_engine.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and TV-L1 on the CPU")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    if args.make_assets:
        make_assets()
        return
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    face = json.loads((ASSETS / "face.json").read_text())
    n_videos, frames = (2, 24) if args.smoke else (args.videos, args.frames)
    report: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "cpu_count": os.cpu_count(), "videos": n_videos,
                    "frames_per_video": frames, "ks": [6, 18], "tvl1": "TEST_TVL1" if args.smoke else "SPEC defaults"}

    def save():
        args.out.write_text(json.dumps(report, indent=2))

    report["batch_invariance"] = batch_invariance(device)
    save()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "videos"
        folders = write_videos(ASSETS / "video.mp4", root, n_videos, frames)
        cpus = os.cpu_count() or 2
        runs = []
        # warm-up: CUDA context, Triton compilation, worker start (not reported)
        run_extract(root / "v0", folders[:1], face, Path(tmp) / "warm.zarr", smoke=args.smoke, decoders=2)
        for n, decoders in enumerate([max(1, cpus - 1), max(1, cpus // 4)] if not args.smoke else [2]):
            runs.append(run_extract(root, folders, face, Path(tmp) / f"run{n}.zarr", smoke=args.smoke,
                                    decoders=decoders))
            report["runs"] = runs
            save()
            print(runs[-1], flush=True)
        again = run_extract(root, folders, face, Path(tmp) / "again.zarr", smoke=args.smoke,
                            decoders=runs[0]["decoders"])
        report["runs"].append(again)
        from flowkit.io.store import FeatureReader

        a, b = FeatureReader(Path(tmp) / "run0.zarr"), FeatureReader(Path(tmp) / "again.zarr")
        report["repeat_equal"] = all(np.array_equal(a.features(v, k)[:], b.features(v, k)[:])
                                     for v in a.videos() for k in a.ks(v))
        save()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
