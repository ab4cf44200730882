"""The size of each deviation from the released code that flowkit leaves off by default (docs/faithfulness.md).

1. cartToPolar round trip: the turn of each flow vector (degrees) and its relative change of
   length, on 10^6 random vectors and on the TV-L1 flows of the clips below.
2. JPEG round trip of the 128x128 colour crop: grey-level change of the crops.
3. Both round trips together (``extract(as_released=True)`` against the default): features
   after per-sample min-max, and the scores of the released CAS(ME)^2 micro model (s1).
4. The old crop convention (box one pixel larger, gray before resize) against the one followed now:
   grey-level change of the crops.
5. AP@[.5:.95] ranked by score against the notebook's way (every confidence 0) on 400 random
   datasets.

Clips: WolfgangLanger_Pexels.mp4 frames 300-329 and single_face.mp4 frames 0-29 (../shared/data),
k = 6, dlib landmarks, OpenCV TV-L1 at its defaults.

Run:
    python tools/experiments/as_released_sizes.py > benchmarks/results/as_released_sizes_cpu.json
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "softnet-keras" / "casme2_micro_s1.hdf5"
CLIPS = (("WolfgangLanger_Pexels.mp4", 300, 30), ("single_face.mp4", 0, 30))
K = 6


def _angle_turn(flow: np.ndarray) -> dict:
    from flowkit.flow.polar import polar_round_trip

    back = polar_round_trip(flow)
    u, v, u2, v2 = flow[:, 0], flow[:, 1], back[:, 0], back[:, 1]
    length = np.hypot(u, v)
    moving = length > 1e-3
    turn = np.degrees(np.abs(np.angle(np.exp(1j * (np.arctan2(v2, u2) - np.arctan2(v, u))))))[moving]
    rel = (np.abs(np.hypot(u2, v2) - length)[moving] / length[moving])
    return {"vectors": int(moving.sum()), "turn_deg_max": float(turn.max()), "turn_deg_mean": float(turn.mean()),
            "length_rel_change_max": float(rel.max()),
            "uv_abs_change_max_px": float(np.abs(back - flow).max())}


def _frames(name: str, first: int, count: int, folder: Path) -> list[np.ndarray]:
    from flowkit.io.sources import open_source

    folder.mkdir(parents=True)
    frames = []
    for i, frame in enumerate(open_source(DATA / name)):
        if i >= first + count:
            break
        if i >= first:
            cv2.imwrite(str(folder / f"{i - first + 1:04d}.png"), frame)
            frames.append(frame)
    return frames


def _features(folder: Path, work: Path, *, as_released: bool) -> np.ndarray:
    from flowkit.io.store import FeatureStore
    from flowkit.pipeline.extract import extract

    store = work / f"{folder.name}_{as_released}.zarr"
    extract([folder], store, ks=[K], landmark_backend="dlib", flow_backend="opencv", workers=1, progress=False,
            as_released=as_released, save_flow=True)
    with FeatureStore(store) as fs:
        (vid,) = fs.videos()
        return np.asarray(fs.features(vid, K)[:]), np.asarray(fs.flow(vid, K)[:])


def _crop_change(frames, box) -> dict:
    from flowkit.face.crop import crop_face

    new = np.stack([crop_face(f, box) for f in frames]).astype(int)
    jpeg = np.stack([crop_face(f, box, jpeg=True) for f in frames]).astype(int)
    x0, y0, x1, y1 = box
    old = np.stack([cv2.resize(cv2.cvtColor(f[y0:y1 + 1, x0:x1 + 1], cv2.COLOR_BGR2GRAY), (128, 128))
                    for f in frames]).astype(int)

    def diff(a, b):
        d = np.abs(a - b)
        return {"mean": float(d.mean()), "max": int(d.max()), "pixels_changed": float((d > 0).mean())}

    return {"jpeg_vs_default": diff(jpeg, new), "old_convention_vs_default": diff(old, new)}


def _scores(features: np.ndarray) -> np.ndarray:
    from spotnet.checkpoint import load_checkpoint
    from spotnet.normalize import minmax_normalize

    model, _ = load_checkpoint(WEIGHTS)
    with torch.no_grad():
        return model(minmax_normalize(torch.from_numpy(features))).numpy().ravel()


def _minmax(x: np.ndarray) -> np.ndarray:
    from spotnet.normalize import minmax_normalize

    return minmax_normalize(torch.from_numpy(x)).numpy()


def clip_sizes(work: Path) -> dict:
    from flowkit.face.landmarks.dlib_backend import DlibLandmarker

    out = {}
    flows = []
    for name, first, count in CLIPS:
        folder = work / Path(name).stem
        frames = _frames(name, first, count, folder)
        box = DlibLandmarker().detect(frames[0]).box
        base, flow = _features(folder, work, as_released=False)
        released, _ = _features(folder, work, as_released=True)
        flows.append(flow)
        d = np.abs(_minmax(released) - _minmax(base))
        s0, s1 = _scores(base), _scores(released)
        out[name] = {"frames": f"{first}-{first + count - 1}", "windows": int(len(base)),
                     "crops": _crop_change(frames, box),
                     "features_minmax_abs_diff": {"mean": float(d.mean()), "max": float(d.max())},
                     "micro_s1_scores": {"abs_diff_mean": float(np.abs(s1 - s0).mean()),
                                         "abs_diff_max": float(np.abs(s1 - s0).max()),
                                         "correlation": float(np.corrcoef(s0, s1)[0, 1])}}
    return out, np.concatenate(flows)


def ap_sizes(n: int = 400) -> dict:
    from spotnet.evaluation import EvalInterval, evaluate

    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n):
        gt, pred = [], []
        for v in range(int(rng.integers(1, 6))):
            for _ in range(int(rng.integers(0, 4))):
                on = int(rng.integers(0, 500))
                gt.append(EvalInterval(f"v{v}", on, on + int(rng.integers(5, 60)), "micro"))
            for _ in range(int(rng.integers(0, 6))):
                on = int(rng.integers(0, 500))
                pred.append(EvalInterval(f"v{v}", on, on + int(rng.integers(5, 60)), "micro", float(rng.random())))
        a = evaluate(pred, gt).micro.ap50_95
        b = evaluate(pred, gt, ap_ranking="released").micro.ap50_95
        diffs.append(abs(a - b))
    return {"datasets": n, "abs_diff_mean": float(np.mean(diffs)), "abs_diff_max": float(np.max(diffs))}


def main() -> None:
    rng = np.random.default_rng(0)
    random_flow = rng.uniform(-10, 10, (1, 2, 1000, 1000)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        clips, flows = clip_sizes(Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    json.dump({
        "what": "size of the released code's round trips and of the other deviations flowkit leaves off by default",
        "command": "python tools/experiments/as_released_sizes.py",
        "commit": commit,
        "versions": {"python": platform.python_version(), "opencv": cv2.__version__, "numpy": np.__version__,
                     "torch": torch.__version__},
        "cart_to_polar": {"random_uniform_-10_10": _angle_turn(random_flow), "clip_flows": _angle_turn(flows)},
        "clips": clips,
        "ap_score_vs_released_ranking": ap_sizes(),
    }, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
