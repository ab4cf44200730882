"""One-shot check of ``flowkit extract --gpu`` end to end (BatchedEngine), as JSON.

It needs nothing but this repository: the inputs are synthetic JPEG folders made here, each
recorded as already prepared in a fresh store (a crop box and 68 crop landmarks, as an earlier
run's first pass leaves them), so no face detection, no mediapipe, no PyAV and no shared data are
needed. zarr comes as carried wheels (docs/gpu.md, "Engine check").

Two inputs, each extracted twice into fresh stores:

- ``casme2_like``: colour JPEG folders of 640x480, k = 6 and 18 (CAS(ME)^2's rawpic);
- ``samm_like``: grayscale JPEG folders of 2040x1088, k = 37 and 174 (SAMM-LV).

For each run it records pairs/s end to end (decoding, cropping, TV-L1, features, Zarr writes),
the stage timings of ``ExtractionReport.stages``, the implementation that ran and the batch it
used, and whether the two runs' stores are bitwise equal. The file also holds the commit, the
torch / triton / driver versions, the GPU's clocks, and whether each solver step gives a pair the
same bits alone and in a batch. It is rewritten after every section, and ``--budget-s`` skips a
run whose predicted time would not fit.

On the GPU machine:   python3 tools/gpu/engine_check.py --out $OUT/engine_check_<gpu>.json
Smoke run on the CPU: python tools/gpu/engine_check.py --smoke --out /tmp/engine_check_smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools" / "gpu"))  # provenance

#: name -> (videos, frames per video, (width, height), grayscale, ks, crop box (x0, y0, x1, y1)).
INPUTS = {
    "casme2_like": (16, 300, (640, 480), False, (6, 18), (200, 100, 440, 340)),
    "samm_like": (4, 600, (2040, 1088), True, (37, 174), (720, 244, 1320, 844)),
}
SMOKE_INPUTS = {
    "casme2_like": (2, 24, (160, 120), False, (6, 18), (40, 20, 120, 100)),
    "samm_like": (1, 40, (255, 136), True, (4, 9), (90, 20, 190, 120)),
}


def synthetic_landmarks(size: int = 128) -> np.ndarray:
    """(68, 2) float32 points in the iBUG-68 layout of a frontal face filling a ``size`` crop."""
    s = size / 128.0
    t = np.linspace(0, 1, 17)
    jaw = np.stack([20 + 88 * t, 40 + 80 * np.sin(np.pi * t)], 1)
    brows = np.concatenate([np.stack([np.linspace(30, 58, 5), np.full(5, 40.0)], 1),
                            np.stack([np.linspace(70, 98, 5), np.full(5, 40.0)], 1)])
    nose = np.concatenate([np.stack([np.full(4, 64.0), np.linspace(48, 70, 4)], 1),
                           np.stack([np.linspace(54, 74, 5), np.full(5, 74.0)], 1)])

    def ellipse(cx, cy, rx, ry, n):
        a = np.linspace(np.pi, 3 * np.pi, n, endpoint=False)
        return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)

    eyes = np.concatenate([ellipse(44, 54, 8, 4, 6), ellipse(84, 54, 8, 4, 6)])
    mouth = np.concatenate([ellipse(64, 96, 18, 8, 12), ellipse(64, 96, 12, 4, 8)])
    return (np.concatenate([jaw, brows, nose, eyes, mouth]) * s).astype(np.float32)


def _texture(width: int, height: int, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (height + 64, width + 64, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 3) + 0.5 * cv2.GaussianBlur(noise, (0, 0), 9)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 255
    return tex.astype(np.uint8)


def _write_frames(args) -> None:
    """Frames start .. stop - 1 of a video: its texture moved by a slow drift and a local bump
    (JPEG, quality 90)."""
    import cv2

    folder, seed, width, height, start, stop, gray = args
    tex = _texture(width, height, seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bump = 2 * np.exp(-((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / (width / 6) ** 2)
    for i in range(start, stop):
        phase = 2 * np.pi * i / 40
        map_x = (xx + 32 + 3 * np.sin(phase) + bump * np.sin(phase / 3)).astype(np.float32)
        map_y = (yy + 32 + 2 * np.cos(phase)).astype(np.float32)
        frame = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR)
        if gray:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(folder / f"img{i + 1}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])


def write_inputs(root: Path, videos: int, frames: int, size: tuple[int, int], gray: bool, *,
                 processes: int | None = None) -> list[Path]:
    """``videos`` JPEG folders ``v0``, ``v1`` ... of ``frames`` frames (img1.jpg ...) each."""
    width, height = size
    jobs, folders = [], []
    step = 50
    for v in range(videos):
        folder = root / f"v{v}"
        folder.mkdir(parents=True)
        folders.append(folder)
        jobs += [(folder, v, width, height, i, min(i + step, frames), gray) for i in range(0, frames, step)]
    with ProcessPoolExecutor(processes or os.cpu_count() or 1) as pool:
        list(pool.map(_write_frames, jobs))
    return folders


def prepared_store(path: Path, folders: list[Path], box, landmarks: np.ndarray) -> None:
    """A store holding each folder as an earlier run's first pass would have left it."""
    import cv2

    from flowkit.face.crop import CROP_CONVENTION
    from flowkit.io.store import FeatureStore

    with FeatureStore(path, mode="a") as store:
        for folder in folders:
            files = sorted(folder.iterdir(), key=lambda p: int(p.stem[3:]))
            h, w = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED).shape[:2]
            attrs = {"source": str(folder.resolve()), "n_frames": len(files), "fps": None,
                     "crop_box": [int(v) for v in box], "reference_frame": 0, "landmark_backend": "mediapipe",
                     "header_frames": len(files), "frame_shape": [h, w, 3], "reader": "images",
                     "subject": folder.name, "annotations": [], "crop_convention": CROP_CONVENTION,
                     "as_released": False}
            store.add_video(folder.name, attrs, landmarks)


def run_extract(root: Path, folders, box, store: Path, *, ks, smoke: bool, decoders: int) -> dict:
    from flowkit.pipeline.extract import TEST_TVL1, extract

    prepared_store(store, folders, box, synthetic_landmarks())
    t0 = time.perf_counter()
    report = extract([root], store, ks=list(ks), gpu=not smoke, flow_backend="torch",
                     flow_params=TEST_TVL1 if smoke else None, progress=False, decoders=decoders,
                     face_check=False)  # synthetic frames hold no face; the GPU image has no MediaPipe
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(report.summary())
    engine = report.engine
    return {"pairs": report.pairs, "seconds": round(seconds, 3), "pairs_per_s": round(report.pairs / seconds, 1),
            "decoders": decoders, "impl": engine.get("impl"), "batch": engine.get("batch"),
            "batch_windows": engine.get("batch_windows"), "stages": report.stages, "engine": engine}


def stores_equal(a: Path, b: Path) -> bool:
    """Every features array of two stores bitwise equal, with the same videos and k."""
    from flowkit.io.store import FeatureReader

    ra, rb = FeatureReader(a), FeatureReader(b)
    if sorted(ra.videos()) != sorted(rb.videos()):
        return False
    return all(ra.ks(v) == rb.ks(v) and all(np.array_equal(ra.features(v, k)[:], rb.features(v, k)[:])
                                            for k in ra.ks(v)) for v in ra.videos())


def batch_invariance(device) -> dict:
    """Each solver step on a batch of 8 against the first item alone: bitwise equal?"""
    import torch

    from flowkit.features import features_from_flow
    from flowkit.flow.median import median_blur
    from flowkit.flow.pyramid import resize_linear
    from flowkit.flow.remap import remap_cubic
    from flowkit.flow.torch_tvl1 import centered_gradient, divergence, forward_gradient, tvl1_torch

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(8, 1, 128, 128, generator=g) * 255).to(device)
    flow = (torch.randn(8, 2, 128, 128, generator=g) * 2).to(device)
    lm = synthetic_landmarks()
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
    }
    out = {}
    for name, fn in steps.items():
        try:
            a, b = fn(x)[:1], fn(x[:1])
            out[name] = {"equal": bool(torch.equal(a, b)), "max_abs": float((a.float() - b.float()).abs().max())}
        except Exception as exc:  # noqa: BLE001 - a report: one failing step must not hide the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def environment(device) -> dict:
    from provenance import provenance

    return {**provenance(device, extract_runs_per_input=2), "numpy": np.__version__}


def check_input(name: str, spec: tuple, tmp: Path, *, smoke: bool, budget_end: float, report: dict, save) -> None:
    """Write one input, extract it twice (a run whose predicted time does not fit is skipped) and
    compare the two stores."""
    videos, frames, size, gray, ks, box = spec
    entry = {"videos": videos, "frames_per_video": frames, "frame_size": list(size),
             "jpeg": "grayscale" if gray else "colour", "ks": list(ks), "runs": []}
    report["inputs"][name] = entry
    t0 = time.perf_counter()
    folders = write_inputs(tmp / name, videos, frames, size, gray)
    entry["write_inputs_s"] = round(time.perf_counter() - t0, 3)
    decoders = max(1, (os.cpu_count() or 2) - 1)
    for n in range(2):
        predicted = entry["runs"][0]["seconds"] if entry["runs"] else 0.0
        if time.perf_counter() + predicted > budget_end:
            entry["skipped"] = f"run {n + 1} predicted {predicted:.0f} s, beyond the budget"
            break
        entry["runs"].append(run_extract(tmp / name, folders, box, tmp / f"{name}_{n}.zarr", ks=ks, smoke=smoke,
                                         decoders=decoders))
        save()
        print(name, {k: v for k, v in entry["runs"][-1].items() if k != "engine"}, flush=True)
    if len(entry["runs"]) == 2:
        entry["repeat_equal"] = stores_equal(tmp / f"{name}_0.zarr", tmp / f"{name}_1.zarr")
    save()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("engine_check.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny inputs and TV-L1 on the CPU")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of the whole check")
    parser.add_argument("--inputs", nargs="*", default=list(INPUTS), choices=list(INPUTS))
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    report: dict = {"smoke": args.smoke, "tvl1": "TEST_TVL1" if args.smoke else "SPEC defaults",
                    "budget_s": args.budget_s, "environment": environment(device), "inputs": {}}

    def save():
        report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))

    save()
    report["batch_invariance"] = batch_invariance(device)
    save()
    specs = SMOKE_INPUTS if args.smoke else INPUTS
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.smoke:  # warm-up: CUDA context, Triton compilation, decoder start (not reported)
            warm = write_inputs(tmp / "warm", 1, 24, (160, 120), False)
            run_extract(tmp / "warm", warm, (40, 20, 120, 100), tmp / "warm.zarr", ks=(6,), smoke=False, decoders=2)
        for name in args.inputs:
            check_input(name, specs[name], tmp, smoke=args.smoke, budget_end=t_start + args.budget_s, report=report,
                        save=save)
    save()
    print(json.dumps({n: {k: v for k, v in e.items() if k != "runs"} for n, e in report["inputs"].items()}, indent=1))


if __name__ == "__main__":
    main()
