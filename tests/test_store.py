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
    with pytest.raises(FlowkitError, match=r"different TV-L1 parameters \(--fast\) "
                                           r"\(\{'nscales': 2, 'warps': 1\} in the store against \{'nscales': 5\}\)"):
        s.create_features("v1", 3, 10, "opencv", {"nscales": 5}, chunk=4)
    with pytest.raises(FlowkitError, match=r"--chunk-windows \(4 in the store against 5\)"):
        s.create_features("v1", 3, 10, "opencv", PARAMS, chunk=5)
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


# ---------------------------------------------------------------------- checksums, one TV-L1 setting
def _flip_bit_in_payload(chunk_file) -> None:
    """Flip one bit in the middle of a chunk object: inside zstd's compressed payload, away from
    its frame header and from the 4 checksum bytes at the end."""
    data = bytearray(chunk_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk_file.write_bytes(bytes(data))


def _written_store(path, n_windows=10, chunk=4):
    s, _ = _store_with_video(path, n_windows=n_windows, chunk=chunk)
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((n_windows, 3, 42, 42)).astype(np.float32)
    for j in range(-(-n_windows // chunk)):
        s.write_chunk("v1", 3, j, feats[j * chunk:(j + 1) * chunk])
    s.mark_complete("v1", 3)
    return s, feats


def test_every_array_is_checksummed_and_a_bit_flip_is_named(tmp_path):
    import zarr

    from flowkit.io.store import has_checksum

    path = tmp_path / "out.zarr"
    s, feats = _written_store(path)
    s.close()
    r = FeatureStore(path)
    assert r.unchecksummed() == []
    kg = zarr.open_group(str(path / "videos/v1/k3"), mode="r")
    assert all(has_checksum(kg[name]) for name in ("features", "written"))
    assert r.verify() == []
    _flip_bit_in_payload(path / "videos/v1/k3/features/c/1/0/0/0")
    problems = r.verify()
    assert [(p.video, p.k, p.chunk) for p in problems] == [("v1", 3, 1)]
    assert "checksum mismatch" in str(problems[0])
    with pytest.raises(ValueError, match="checksum"):  # a reader never gets the damaged numbers
        r.features("v1", 3)[4:8]
    np.testing.assert_array_equal(r.features("v1", 3)[0:4], feats[0:4])


def _strip_checksums(path) -> None:
    """Rewrite every array of a store as flowkit wrote them before it added checksums (zstd only)."""
    import zarr

    for meta in path.rglob("zarr.json"):
        folder = meta.parent
        if folder == path or json_load(meta).get("node_type") != "array":
            continue
        old = zarr.open_array(str(folder), mode="r")
        data, attrs = old[...], dict(old.attrs)
        new = zarr.create_array(str(folder), shape=old.shape, chunks=old.chunks, dtype=old.dtype,
                                fill_value=old.fill_value, dimension_names=old.metadata.dimension_names,
                                attributes=attrs, overwrite=True, config={"write_empty_chunks": True})
        new[...] = data


def json_load(path):
    import json

    return json.loads(path.read_text())


def test_store_without_checksums_reads_and_upgrades(tmp_path):
    path = tmp_path / "old.zarr"
    s, feats = _written_store(path)
    s.close()
    _strip_checksums(path)
    r = FeatureStore(path)
    assert sorted(r.unchecksummed()) == ["videos/v1/k3/features", "videos/v1/k3/written", "videos/v1/landmarks"]
    assert r.summary()["unchecksummed_arrays"] == 3
    np.testing.assert_array_equal(r.features("v1", 3)[:], feats)  # still readable
    with FeatureStore(path, mode="a") as w:
        assert w.upgrade() == []
    r = FeatureStore(path)
    assert r.unchecksummed() == [] and r.is_complete("v1", 3)
    np.testing.assert_array_equal(r.features("v1", 3)[:], feats)
    assert r.attrs["flow_params"] == PARAMS
    _flip_bit_in_payload(path / "videos/v1/k3/features/c/2/0/0/0")
    assert [p.chunk for p in r.verify()] == [2]


def test_one_tvl1_setting_per_store(tmp_path):
    import zarr

    path = tmp_path / "out.zarr"
    s, _ = _store_with_video(path)
    s.claim_flow_params(PARAMS)
    s.claim_flow_params(dict(PARAMS))  # the same setting again: accepted
    with pytest.raises(FlowkitError, match=r"should match those of store .*nscales 2 against 3"):
        s.claim_flow_params({"nscales": 3, "warps": 1})
    s.close()
    assert FeatureStore(path).flow_params() == PARAMS
    # A store written before the root recorded it, whose videos disagree, is refused by every reader.
    s = FeatureStore(path, mode="a")
    lms = np.zeros((68, 2), np.float32)
    s.add_video("v2", {"subject": "s2", "n_frames": 13, "crop_box": [1, 2, 3, 4]}, lms)
    s.create_features("v2", 3, 10, "opencv", {"nscales": 3, "warps": 1}, chunk=4)
    s.close()
    root = zarr.open_group(str(path), mode="r+")
    del root.attrs["flow_params"]
    with pytest.raises(FlowkitError, match=r"one TV-L1 setting, got video v1 k=3 with nscales 2 against 3 in "
                                           r"video v2 k=3"):
        FeatureStore(path).flow_params()
