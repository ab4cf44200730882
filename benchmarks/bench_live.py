"""Live spotting throughput: pairs/s and the real-time factor of ``spotnet live``'s pipeline.

Run: ``pytest benchmarks/bench_live.py --benchmark-only -s``. The source is the first 48 frames of
the shared single_face.mp4 (30 fps) written to a file and read as fast as it decodes; the models
are the released CAS(ME)^2 micro (k = 6) and macro (k = 18) weights, so every frame brings two
pairs, as in a live run of both types. Cases: TV-L1 at SPEC defaults and with ``--fast``, on the
CPU (OpenCV, the default backend) and, where CUDA is present, the torch solver on the GPU.
``extra_info`` keeps pairs/s and the real-time factor (stream seconds per wall-clock second; >= 1
keeps up with the camera).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
import torch

from flowkit.flow.params import check_params
from flowkit.pipeline.extract import FAST_TVL1

SHARED = Path(__file__).resolve().parents[2] / "shared"
N_FRAMES = 48

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]),
]


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    video = SHARED / "data" / "single_face.mp4"
    if not video.is_file():
        pytest.skip(f"shared video {video} is absent")
    model = SHARED / "models" / "face_landmarker.task"
    if model.is_file():
        os.environ.setdefault("FLOWKIT_MEDIAPIPE_MODEL", str(model))
    out = tmp_path_factory.mktemp("live") / "clip.avi"
    cap = cv2.VideoCapture(str(video))
    writer = None
    for _ in range(N_FRAMES):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    return out


def _models(folder: Path, flow_params: dict | None) -> Path:
    from spotnet import load_model, save_model

    folder.mkdir(parents=True, exist_ok=True)
    for name, kind, k in (("casme2_micro_s1", "micro", 6), ("casme2_macro_s1", "macro", 18)):
        keras = SHARED / "weights" / "softnet-keras" / f"{name}.hdf5"
        if not keras.is_file():
            pytest.skip(f"released Keras weights {keras} are absent")
        meta = {"type": kind, "k": k, **({"flow_params": flow_params} if flow_params else {})}
        save_model(load_model(keras), folder / f"{name}.pt", metadata=meta)
    return folder


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", ["spec", "fast"])
def test_live_throughput(benchmark, stream_file, tmp_path, preset, device):
    from spotnet.live import LiveOptions, run_live

    params = check_params(dict(FAST_TVL1)).to_dict() if preset == "fast" else None
    models = _models(tmp_path / "models", params)
    statuses = []
    extract = {"flow_backend": "torch", "device": "cuda"} if device == "cuda" else {}

    def run():
        statuses.clear()
        return run_live(models, stream_file, options=LiveOptions(warmup_s=0.5, history_s=5, batch=16),
                        on_status=statuses.append, **extract)

    benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    seconds = benchmark.stats.stats.median
    pairs = (N_FRAMES - 6) + (N_FRAMES - 18)
    rate, factor = pairs / seconds, N_FRAMES / 30.0 / seconds
    benchmark.extra_info.update(preset=preset, device=device, frames=N_FRAMES, pairs=pairs,
                                pairs_per_s=rate, realtime_factor=factor, needed_pairs_per_s_at_30fps=60)
    print(f"\nlive {preset} on {device}: {rate:.1f} pairs/s, {factor:.3f}x real time "
          "(30 fps at two k needs 60 pairs/s)")
