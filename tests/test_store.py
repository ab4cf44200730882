"""The Zarr feature store (docs/store.md): round trip, named dims, resume state, lock, bad paths."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from flowkit.errors import FlowkitError
from flowkit.io.store import SCHEMA_VERSION, FeatureStore

PARAMS = {"nscales": 2, "warps": 1}


def _store_with_video(path, n_windows=10, chunk=4, save_flow=False):
    s = FeatureStore(path, mode="a")
    lms = np.arange(136, dtype=np.float32).reshape(68, 2)
    s.add_video("v1", {"subject": "s1", "n_frames": n_windows + 3, "fps": 30.0, "crop_box": [1, 2, 3, 4],
                       "annotations": [{"onset": 1, "apex": 2, "offset": 3, "type": "micro"}]}, lms)
    s.create_features("v1", 3, n_windows, "opencv", PARAMS, chunk=chunk, save_flow=save_flow)
    return s, lms


def test_round_trip(tmp_path):
    path = tmp_path / "out.zarr"
    s, lms = _store_with_video(path, save_flow=True)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((10, 3, 42, 42)).astype(np.float32)
    flow = rng.standard_normal((10, 2, 128, 128)).astype(np.float32)
    for j, (a, b) in enumerate([(0, 4), (4, 8), (8, 10)]):
        assert not s.is_complete("v1", 3)
        s.write_chunk("v1", 3, j, feats[a:b], flow[a:b])
        assert s.mark_complete("v1", 3) == (j == 2)
    s.close()

    r = FeatureStore(path)
    assert r.attrs["schema_version"] == SCHEMA_VERSION and "flowkit_version" in r.attrs
    assert r.videos() == ["v1"] and r.ks("v1") == [3]
    assert r.video_attrs("v1")["subject"] == "s1"
    assert r.annotations("v1") == [{"onset": 1, "apex": 2, "offset": 3, "type": "micro"}]
    np.testing.assert_array_equal(r.landmarks("v1"), lms)
    np.testing.assert_array_equal(r.features("v1", 3)[:], feats)
    np.testing.assert_array_equal(r.flow("v1", 3)[:], flow)
    assert r.is_complete("v1", 3) and r.written("v1", 3).all()
    info = r.summary()
    assert info["videos"][0]["ks"][0] == {"k": 3, "n_windows": 10, "complete": True, "chunks_written": 3,
                                          "n_chunks": 3, "missing_chunks": [], "flow_backend": "opencv",
                                          "flow_params": PARAMS}
    with pytest.raises(FlowkitError, match="mode='a'"):
        r.write_chunk("v1", 3, 0, feats[:4])


def test_xarray_named_dims(tmp_path):
    xr = pytest.importorskip("xarray")
    path = tmp_path / "out.zarr"
    s, _ = _store_with_video(path)
    s.close()
    ds = xr.open_zarr(path, group="videos/v1/k3", consolidated=False)
    assert ds["features"].dims == ("window", "channel", "y", "x")
    assert ds["features"].shape == (10, 3, 42, 42)


def test_resume_state_and_mismatch(tmp_path):
    path = tmp_path / "out.zarr"
    s, _ = _store_with_video(path)
    s.write_chunk("v1", 3, 1, np.ones((4, 3, 42, 42), np.float32))
    s.close()
    s = FeatureStore(path, mode="a")
    s.create_features("v1", 3, 10, "opencv", PARAMS, chunk=4)  # same settings: kept
    assert s.written("v1", 3).tolist() == [False, True, False]
    with pytest.raises(FlowkitError, match="different flow_params"):
        s.create_features("v1", 3, 10, "opencv", {"nscales": 5}, chunk=4)
    with pytest.raises(FlowkitError, match=r"shape \(4, 3, 42, 42\)"):
        s.write_chunk("v1", 3, 0, np.ones((3, 3, 42, 42), np.float32))
    with pytest.raises(FlowkitError, match="unknown 'v9'"):
        s.features("v9", 3)
    with pytest.raises(FlowkitError, match="k=5"):
        s.features("v1", 5)
    s.close()


def test_second_writer_refused_same_process(tmp_path):
    path = tmp_path / "out.zarr"
    with FeatureStore(path, mode="a"):
        with pytest.raises(FlowkitError, match=r"is being written by another process \(pid \d+\)"):
            FeatureStore(path, mode="a")
        FeatureStore(path, mode="r")  # readers are not blocked
    FeatureStore(path, mode="a").close()  # released


def test_second_writer_refused_other_process(tmp_path):
    path = tmp_path / "out.zarr"
    code = ("import sys; from flowkit.io.store import FeatureStore; from flowkit.errors import FlowkitError\n"
            "try:\n    FeatureStore(sys.argv[1], mode='a')\nexcept FlowkitError as e:\n    print(e); sys.exit(3)\n")
    with FeatureStore(path, mode="a"):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    import os

    assert out.returncode == 3, out.stderr
    assert f"being written by another process (pid {os.getpid()})" in out.stdout


def test_bad_paths(tmp_path):
    f = tmp_path / "file.zarr"
    f.write_text("x")
    with pytest.raises(FlowkitError, match="which is a file"):
        FeatureStore(f, mode="a")
    d = tmp_path / "folder"
    d.mkdir()
    (d / "thing.txt").write_text("x")
    with pytest.raises(FlowkitError, match="not a Zarr store"):
        FeatureStore(d, mode="a")
    with pytest.raises(FlowkitError, match="should exist"):
        FeatureStore(tmp_path / "missing.zarr")
    with pytest.raises(FlowkitError, match="mode"):
        FeatureStore(tmp_path / "x.zarr", mode="w")


def test_bad_video_input(tmp_path):
    with FeatureStore(tmp_path / "out.zarr", mode="a") as s:
        with pytest.raises(FlowkitError, match=r"\(68, 2\)"):
            s.add_video("v", {}, np.zeros((5, 2)))
        with pytest.raises(FlowkitError, match="without '/'"):
            s.add_video("a/b", {}, np.zeros((68, 2)))
