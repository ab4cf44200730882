"""`spotnet live` on a video file played as a stream: intervals come out while it is running."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoint(shared_dir, mediapipe_model, tmp_path_factory):
    """The released CAS(ME)^2 micro weights (k = 6) with the test TV-L1 preset recorded, so that
    live extraction is fast (the live command takes TV-L1 settings from the checkpoint)."""
    keras = shared_dir / "weights" / "softnet-keras" / "casme2_micro_s1.hdf5"
    if not keras.is_file():
        pytest.skip(f"released Keras weights {keras} are absent")
    from flowkit.flow.params import check_params
    from flowkit.pipeline.extract import TEST_TVL1
    from spotnet import load_model, save_model

    path = tmp_path_factory.mktemp("live") / "micro.pt"
    save_model(load_model(keras), path, metadata={"type": "micro", "k": 6,
                                                  "flow_params": check_params(dict(TEST_TVL1)).to_dict()})
    return path


@pytest.mark.system
def test_live_reports_intervals_while_the_stream_runs(checkpoint, data_dir, tmp_path):
    video = data_dir / "WolfgangLanger_Pexels.mp4"  # 472 frames at 23.976 fps: about 20 s played in real time
    cmd = [sys.executable, "-m", "cli.spotnet_app", "live", str(checkpoint), str(video), "--jsonl", "--realtime",
           "--warmup", "1", "--history", "5", "--out", str(tmp_path / "live.csv")]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # each line is flushed when its interval is confirmed
        lines.append((time.monotonic() - start, proc.poll() is None, json.loads(line)))
    proc.wait(timeout=300)
    assert proc.returncode == 0, proc.stderr.read()
    assert lines, "no interval was spotted"
    for _, _, record in lines:
        assert set(record) >= {"video", "onset", "offset", "type", "score", "reported_frame", "latency_s"}
        assert record["video"] == "WolfgangLanger_Pexels" and record["type"] == "micro"
        # Causal: reported at least 2k - 1 frames after the interval's last frame, never before.
        assert record["reported_frame"] >= record["offset"] + 2 * 6 - 1 and record["latency_s"] >= 0
    early = [(t, alive, r) for t, alive, r in lines if r["reported_frame"] < 472 - 50]
    assert early, "every interval came at the end of the stream"
    t, alive, record = early[0]
    assert alive, "the first intervals must be printed while the stream still runs"
    # Played in real time, frame f is read f / 23.976 s after the start; the report cannot precede it.
    assert t >= record["reported_frame"] / 23.976 - 0.5
    csv = (tmp_path / "live.csv").read_text().splitlines()
    assert csv[0] == "video,onset,offset,type,score" and len(csv) == len(lines) + 1


def test_bad_source_is_one_line(checkpoint, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cli.spotnet_app", "live", str(checkpoint), str(tmp_path / "none.mp4")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"spotnet: error: live source should be a camera index, a stream URL or a video file, got "
        f"'{tmp_path / 'none.mp4'}' (no such file)"]


def test_no_face_stops_with_an_error(checkpoint, data_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cli.spotnet_app", "live", str(checkpoint), str(data_dir / "no_face.mp4"),
                        "--no-face-timeout", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "a face should appear within 1 s of the stream" in r.stderr


class _ScriptedLandmarker:
    """A face at a box that the test moves; landmarks on a grid inside it."""

    def __init__(self):
        self.box = (40, 30, 140, 130)
        self.present = True

    def detect(self, image):
        from flowkit.face.landmarks.face import Face

        if not self.present:
            return None
        h, w = image.shape[:2]
        if (h, w) == (128, 128):  # the crop: landmarks in crop pixels
            x0, y0, x1, y1 = 10, 10, 118, 118
        else:
            x0, y0, x1, y1 = self.box
        gx, gy = np.meshgrid(np.linspace(x0 + 5, x1 - 5, 17), np.linspace(y0 + 10, y1 - 5, 4))
        return Face(self.box, np.stack([gx, gy], -1).reshape(-1, 2)[:68].astype(np.float32))

    def close(self):
        pass


def test_extractor_relocks_in_a_new_segment_and_never_mixes_crops():
    from flowkit.flow.params import check_params
    from flowkit.pipeline.extract import TEST_TVL1, ExtractionSettings
    from flowkit.pipeline.live import FaceTracking, LiveExtractor

    settings = ExtractionSettings(backend="opencv", device=None, backend_name="opencv",
                                  params=check_params(dict(TEST_TVL1)).to_dict(), save_flow=False, chunk_windows=4,
                                  batch_windows=4, workers=1, threaded=False, landmark_backend="test")
    lm = _ScriptedLandmarker()
    ex = LiveExtractor([2, 3], landmarker=lm, settings=settings, fps=10, batch=4,
                       tracking=FaceTracking(check_s=0.5, lost_s=1.0, no_face_s=3.0))
    rng = np.random.default_rng(0)
    windows = []
    for i in range(40):
        if i == 20:
            lm.box = (90, 60, 190, 160)  # the face moved by half its size
        windows += ex.feed(i, rng.integers(0, 255, (200, 240, 3), dtype=np.uint8))
    windows += ex.flush()
    segments = {}
    for w in windows:
        segments.setdefault((w.segment, w.k), []).extend(range(w.first, w.first + len(w.features)))
    assert {s for s, _ in segments} == {0, 1}
    seg1_start = {w.start for w in windows if w.segment == 1}
    assert seg1_start == {20}, "the move is seen at the first check after it (every 5 frames)"
    # Each segment's windows at k cover 0 .. n - k - 1 exactly once: frames 0-19 and 20-39.
    for (segment, k), got in segments.items():
        assert got == list(range(20 - k)), (segment, k)
    assert ex.pairs == 2 * ((20 - 2) + (20 - 3))
    lm.present = False
    from flowkit.errors import FlowkitError

    with pytest.raises(FlowkitError, match="a face should appear within 3 s"):
        ex.segment = None
        for i in range(40, 80):
            ex.feed(i, rng.integers(0, 255, (200, 240, 3), dtype=np.uint8))


def test_falling_behind_is_said_once_with_by_how_much(capsys):
    """On a CPU that cannot keep up, spotnet live says so once, with the rates that show by how much
    (30 fps at two k is 60 pairs/s needed; 5 computed)."""
    from cli.spotnet_app import LiveStatusPrinter
    from spotnet.live import LiveStatus

    printer = LiveStatusPrinter(enabled=False)
    printer.show(LiveStatus(frames=30, pairs=10, elapsed_s=2.0, behind_s=1.0, fps=30.0, ks=(6, 18)))
    assert capsys.readouterr().err == "", "no warning while the lag is small"
    for elapsed in (6.0, 8.0):
        printer.show(LiveStatus(frames=60, pairs=int(5 * elapsed), elapsed_s=elapsed, behind_s=3.0, fps=30.0,
                                ks=(6, 18)))
    err = capsys.readouterr().err.splitlines()
    assert err == ["spotnet: warning: cannot keep up: 5.0 pairs/s computed against 60.0 arriving (0.33x real "
                   "time); reports lag 3.0 s and the lag grows"]
