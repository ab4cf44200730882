"""``flowkit`` CLI in subprocesses: exit codes, info --json, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from video_clips import write_frames

REPO = Path(__file__).resolve().parent.parent


def flowkit(*args, **kwargs):
    cmd = [sys.executable, "-m", "cli.flowkit_app", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, data_dir, mediapipe_model):
    root = tmp_path_factory.mktemp("cli")
    write_frames(data_dir / "single_face.mp4", root / "data" / "good", 12)
    write_frames(data_dir / "no_face.mp4", root / "data" / "noface", 6)
    write_frames(data_dir / "single_face.mp4", root / "long", 60)
    return root


def test_failure_exit_code_and_info_json(clips, tmp_path):
    out = tmp_path / "o.zarr"
    r = flowkit("extract", clips / "data", out, "--k", 2, "--fast", "--workers", 1, "--quiet")
    assert r.returncode == 1, r.stderr
    assert "1 of 2 video(s) extracted" in r.stdout
    assert "noface (no face found" in r.stderr
    info = flowkit("info", out, "--json")
    assert info.returncode == 0, info.stderr
    d = json.loads(info.stdout)
    assert d["schema_version"] == 1
    (v,) = d["videos"]
    assert v["video"] == "good" and v["subject"] == "good" and v["n_frames"] == 12
    assert v["ks"][0]["k"] == 2 and v["ks"][0]["n_windows"] == 10 and v["ks"][0]["complete"]
    assert v["ks"][0]["flow_backend"] == "opencv" and v["ks"][0]["flow_params"]["outer_iterations"] == 2
    table = flowkit("info", out)
    assert table.returncode == 0 and "complete" in table.stdout and "good" in table.stdout


def test_bad_input_one_line_exit_2(tmp_path):
    f = tmp_path / "file.zarr"
    f.write_text("x")
    r = flowkit("info", f)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("flowkit: error: ")
    r = flowkit("extract", tmp_path / "missing", tmp_path / "o.zarr", "--k", 2)
    assert r.returncode == 2 and "should exist" in r.stderr and "Traceback" not in r.stderr


def _written(store: Path) -> int:
    import zarr

    try:
        g = zarr.open_group(str(store), mode="r")
        return int(np.asarray(g["videos/long/k2/written"][...]).sum())
    except Exception:  # not created yet
        return 0


@pytest.mark.system
def test_resume_after_kill_9(clips, tmp_path):
    args = ["--k", 2, "--fast", "--workers", 2, "--chunk-windows", 4, "--quiet"]
    ref = tmp_path / "ref.zarr"
    r = flowkit("extract", clips / "long", ref, *args)
    assert r.returncode == 0, r.stderr

    out = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "cli.flowkit_app", "extract", str(clips / "long"), str(out), *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while _written(out) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker processes, as in a crash
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    from flowkit.io.store import FeatureStore

    s = FeatureStore(out)
    n_chunks = s.written("long", 2).size
    done = int(s.written("long", 2).sum())
    assert 3 <= done < n_chunks and not s.is_complete("long", 2)

    r = flowkit("extract", clips / "long", out, *args)
    assert r.returncode == 0, r.stderr
    pairs = int(r.stdout.split(" pairs in ")[0].rsplit(" ", 1)[1])
    assert pairs <= 58 - 4 * 3  # only unwritten chunks were recomputed
    s, ref_s = FeatureStore(out), FeatureStore(ref)
    assert s.is_complete("long", 2)
    np.testing.assert_array_equal(s.features("long", 2)[:], ref_s.features("long", 2)[:])
