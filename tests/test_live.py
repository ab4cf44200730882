"""`spotnet live` on a video file played as a stream: intervals come out while it is running."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoint(shared_dir, mediapipe_model, tmp_path_factory):
    """The released CAS(ME)^2 micro weights (k = 6) with the test TV-L1 preset recorded, so that
    live extraction is fast (the live command takes TV-L1 settings from the checkpoint)."""
    keras = shared_dir / "weights" / "softnet-keras" / "casme2_micro_s1.hdf5"
    if not keras.is_file():
        pytest.skip(f"released Keras weights {keras} are absent")
    from flowkit.extract import TEST_TVL1
    from flowkit.flow.params import check_params
    from spotnet import load_model, save_model

    path = tmp_path_factory.mktemp("live") / "micro.pt"
    save_model(load_model(keras), path, metadata={"type": "micro", "k": 6,
                                                  "flow_params": check_params(dict(TEST_TVL1)).to_dict()})
    return path


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
