"""Work units and the engines that run them: plan, exact seeks, lock-free chunk writes, batched solving,
and which errors fail a video (data) and which stop the run (bugs)."""

from __future__ import annotations

import multiprocessing
from collections import Counter

import numpy as np
import pytest
from video_clips import write_frames, write_video

from flowkit.io.store import ChunkWriter, FeatureReader, FeatureStore
from flowkit.pipeline.extract import TEST_TVL1, extract
from flowkit.pipeline.plan import VideoWork, plan_units, windows_of

SHARED_VIDEOS = ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "noface_face.mov"]


@pytest.mark.parametrize("todo, unit_windows", [({2: range(13), 9: range(12)}, 40), ({2: {0, 5, 12}, 9: {11}}, 16),
                                                ({9: range(12)}, 1000)])
def test_units_cover_each_chunk_once_and_read_the_frames_it_needs(todo, unit_windows):
    n_frames, chunk = 100, 8  # k=2: 98 windows in 13 chunks; k=9: 91 windows in 12
    units = plan_units([VideoWork("v", n_frames, todo, chunk)], unit_windows=unit_windows)
    covered = [(k, j) for u in units for k, js in u.chunks for j in js]
    assert sorted(covered) == sorted((k, j) for k, js in todo.items() for j in js)  # each once
    for u in units:
        first, stop = u.frames
        assert stop <= n_frames and u.stop - u.start <= -(-unit_windows // chunk) * chunk
        for k, js in u.chunks:
            for j in js:
                s, e = windows_of(u, k, j)
                assert u.start <= s < e <= u.stop and first <= s and e - 1 + k < stop


def test_a_sequential_video_is_one_unit():
    (unit,) = plan_units([VideoWork("v", 50, {2: [0, 3], 6: [1]}, 8, sequential=True)], unit_windows=8)
    # chunk 3 of k=2 ends at window 31, which pairs frame 33
    assert unit.sequential and unit.chunks == ((2, (0, 3)), (6, (1,))) and unit.frames == (0, 34)


@pytest.mark.parametrize("name", SHARED_VIDEOS)
def test_a_seek_yields_the_frames_of_a_sequential_decode(data_dir, name):
    """Every start a unit may seek to (around each keyframe, and the end): frame i from a seek is
    frame i of cv2.VideoCapture's sequential decode, bit for bit."""
    from flowkit.io.sources import open_source
    from flowkit.io.video_index import index_video, read_range

    path = data_dir / name
    frames = list(open_source(path))  # cv2.VideoCapture, in order
    index = index_video(path)
    assert index is not None and index.n_frames == len(frames)
    keys = index.keyframes.tolist()
    starts = sorted({s for key in keys for s in (key - 1, key, key + 1, key + 7)} | {len(frames) - 3})
    for start in [s for s in starts if 0 <= s < len(frames)]:
        window = index.window(start, start + 12)  # what a unit carries
        got = list(read_range(path, window, start, start + 12))
        assert [i for i, _ in got] == list(range(start, min(start + 12, len(frames))))
        for i, frame in got:
            assert np.array_equal(frame, frames[i]), f"{name}: frame {i} differs after a seek to {start}"


def test_frames_that_do_not_decode_are_a_gap(data_dir):
    """no_face.mp4 has 98 packets but 95 frames decode: a seek cannot number them, so it says so."""
    from flowkit.io.video_index import FrameGap, index_video, read_range

    index = index_video(data_dir / "no_face.mp4")
    with pytest.raises(FrameGap):
        list(read_range(data_dir / "no_face.mp4", index, 0, 10))


class _CountedContainer:
    """A PyAV container whose decode() counts each frame it yields by the frame's number."""

    def __init__(self, container, pts: np.ndarray, counts: Counter):
        self._container, self._pts, self._counts = container, pts, counts

    def __getattr__(self, name):
        return getattr(self._container, name)

    def decode(self, *args):
        for frame in self._container.decode(*args):
            self._counts[int(np.searchsorted(self._pts, frame.pts))] += 1
            yield frame


class _DecodeCounter:
    """What a run decodes: the frame numbers the driver decodes (cv2.VideoCapture, while it looks
    for the reference face), those the work units decode (PyAV, including the frames a seek decodes
    before a unit's first frame), and the frame range of each unit the engine ran."""

    def __init__(self, monkeypatch, path):
        import flowkit.io.sources as sources
        import flowkit.io.video_index as video_index
        import flowkit.pipeline.engines as engines

        self.driver, self.units, self.ranges = Counter(), Counter(), []
        pts = video_index.index_video(path).pts
        iterate, open_video, run = sources.VideoFileSource.__iter__, video_index._open, engines.InlineEngine.run

        def driver_frames(source):
            for n, frame in enumerate(iterate(source)):
                self.driver[n] += 1
                yield frame

        def unit_container(video):
            container, stream = open_video(video)
            return _CountedContainer(container, pts, self.units), stream

        def run_units(engine, tasks):
            self.ranges += [t.unit.frames for t in tasks]
            return run(engine, tasks)

        monkeypatch.setattr(sources.VideoFileSource, "__iter__", driver_frames)
        monkeypatch.setattr(video_index, "_open", unit_container)
        monkeypatch.setattr(engines.InlineEngine, "run", run_units)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory, data_dir):
    """The first 40 frames of single_face.mp4 re-encoded (mp4v, cv2's default GOP of 12 frames)."""
    return write_video(data_dir / "single_face.mp4", tmp_path_factory.mktemp("video") / "clip.mp4", 40)


def test_a_run_decodes_each_frame_once(short_video, mediapipe_model, tmp_path, monkeypatch):
    """Issue 10's one decode per frame: with one unit for the video, the units decode every frame
    exactly once, and the driver decodes only the frames up to the reference face (frame 0 here);
    the frame count comes from the packet index, not from decoding. (The face check after the run,
    face_check=False here, decodes the video once more in the driver.)"""
    counter = _DecodeCounter(monkeypatch, short_video)
    report = extract([short_video], tmp_path / "o.zarr", ks=[2, 6], flow_params=TEST_TVL1, workers=1,
                     chunk_windows=8, unit_windows=1000, model_path=mediapipe_model, progress=False,
                     face_check=False)
    assert report.ok and report.pairs == (40 - 2) + (40 - 6)
    assert dict(counter.units) == {i: 1 for i in range(40)}
    assert dict(counter.driver) == {0: 1}


def test_units_decode_again_only_their_overlap_and_seek_preroll(short_video, mediapipe_model, tmp_path,
                                                                monkeypatch):
    """With several units, a frame is decoded again only where a unit starts: the max(k) frames it
    shares with the unit before and the frames from the keyframe before it (a seek's pre-roll)."""
    from flowkit.io.video_index import index_video

    counter = _DecodeCounter(monkeypatch, short_video)
    report = extract([short_video], tmp_path / "o.zarr", ks=[2, 6], flow_params=TEST_TVL1, workers=1,
                     chunk_windows=8, unit_windows=8, model_path=mediapipe_model, progress=False)
    assert report.ok
    index = index_video(short_video)
    expected = Counter(i for first, stop in counter.ranges for i in range(index.keyframe_before(first), stop))
    assert len(counter.ranges) > 1 and dict(counter.units) == dict(expected)
    assert sorted(counter.units) == list(range(40))


def _write_chunks(path: str, chunks: list[int]) -> None:
    writer = ChunkWriter(path)
    for j in chunks:
        writer.write_chunk("v", 2, j, np.full((4, 3, 42, 42), j, np.float32))


def test_concurrent_writers_of_different_chunks_keep_every_flag(tmp_path):
    """Two processes write alternate chunks at the same time while the driver holds the lock:
    with one object per flag, no flag is lost (with one object for all, the last writer wins)."""
    with FeatureStore(tmp_path / "s.zarr", mode="a") as store:
        store.add_video("v", {"n_frames": 162}, np.zeros((68, 2), np.float32))
        store.create_features("v", 2, 160, "opencv", {}, chunk=4)
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_write_chunks, args=(str(store.path), list(range(r, 40, 2)))) for r in (0, 1)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [0, 0]
        assert store.written("v", 2).all() and store.mark_complete("v", 2)
    feats = FeatureReader(tmp_path / "s.zarr").features("v", 2)[:]
    np.testing.assert_array_equal(feats[:, 0, 0, 0], np.repeat(np.arange(40), 4))


def test_a_store_with_one_flag_object_is_upgraded_on_resume(tmp_path):
    import zarr

    with FeatureStore(tmp_path / "s.zarr", mode="a") as store:
        store.add_video("v", {"n_frames": 20}, np.zeros((68, 2), np.float32))
        store.create_features("v", 2, 18, "opencv", {}, chunk=4)
        for j in (0, 2):
            store.write_chunk("v", 2, j, np.ones((4, 3, 42, 42), np.float32))
        kg = zarr.open_group(str(tmp_path / "s.zarr/videos/v/k2"), mode="r+")
        old = kg.create_array("written", shape=(5,), chunks=(5,), dtype="bool", fill_value=False, overwrite=True)
        old[...] = [True, False, True, False, False]  # the layout of stores made before the engines
        store.create_features("v", 2, 18, "opencv", {}, chunk=4)  # what a resumed run does
        assert kg["written"].chunks == (1,) and store.written("v", 2).tolist() == [True, False, True, False, False]


def test_resizing_keeps_written_chunks_and_drops_the_rest(tmp_path):
    """Chunk j holds the value j, chunk 0 zeros: an all-fill-value chunk is stored too."""
    with FeatureStore(tmp_path / "s.zarr", mode="a") as store:
        store.add_video("v", {"n_frames": 20}, np.zeros((68, 2), np.float32))
        store.create_features("v", 2, 18, "opencv", {}, chunk=4)
        for j in range(5):
            store.write_chunk("v", 2, j, np.full((min(4, 18 - 4 * j), 3, 42, 42), j, np.float32))
        store.resize_windows("v", 2, 9)  # the video has 11 frames, not 20
        assert store.features("v", 2).shape == (9, 3, 42, 42) and store.written("v", 2).tolist() == [True] * 3
        assert store.mark_complete("v", 2)
        np.testing.assert_array_equal(store.features("v", 2)[:, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 2])
        store.resize_windows("v", 2, 12)  # longer: the old last chunk (short) is computed again
        assert store.written("v", 2).tolist() == [True, True, False]
        store.drop_k("v", 2)
        assert store.ks("v") == []


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory, data_dir, mediapipe_model):
    root = tmp_path_factory.mktemp("clips")
    write_frames(data_dir / "single_face.mp4", root / "good", 20)
    write_frames(data_dir / "WolfgangLanger_Pexels.mp4", root / "lady", 14)
    return root


def test_batched_engine_equals_one_unit_at_a_time(two_clips, tmp_path):
    """The batched engine (what runs on CUDA) puts windows of both videos and both k into one
    batch; the torch solver on the CPU is batch-independent (tests/test_flow_torch.py), so the
    features equal those of the same solver run unit by unit, bit for bit."""
    common = dict(ks=[2, 5], flow_params=TEST_TVL1, flow_backend="torch", chunk_windows=4, unit_windows=4,
                  progress=False)
    batched = extract([two_clips], tmp_path / "b.zarr", batch_windows=64, decoders=2, **common)
    inline = extract([two_clips], tmp_path / "i.zarr", workers=1, **common)
    assert batched.ok and inline.ok and batched.engine["engine"] == "batched" and inline.engine["engine"] == "inline"
    assert 0 <= batched.engine["solver_idle_fraction"] < 1
    a, b = FeatureReader(tmp_path / "b.zarr"), FeatureReader(tmp_path / "i.zarr")
    for vid in ("good", "lady"):
        for k in (2, 5):
            assert a.is_complete(vid, k)
            np.testing.assert_array_equal(a.features(vid, k)[:], b.features(vid, k)[:])


def test_a_bad_image_fails_its_video_alone(two_clips, tmp_path):
    import shutil

    bad = tmp_path / "in"
    shutil.copytree(two_clips, bad)
    (bad / "lady" / "img9.png").write_bytes(b"not an image")
    report = extract([bad], tmp_path / "o.zarr", ks=[2], flow_params=TEST_TVL1, workers=2, chunk_windows=4,
                     unit_windows=4, progress=False)
    by_id = {v.video_id: v for v in report.videos}
    assert by_id["good"].status == "done" and by_id["lady"].status == "failed"
    assert "img9.png" in by_id["lady"].message and "could not be decoded" in by_id["lady"].message


def test_a_bug_stops_the_run_instead_of_failing_a_video(two_clips, tmp_path, monkeypatch):
    """A ValueError from our own code is not bad data: it propagates (here from the inline engine)."""
    from flowkit.pipeline import units

    def broken(*args, **kwargs):
        raise ValueError("a bug in the solver")

    monkeypatch.setattr(units, "compute_windows", broken)
    with pytest.raises(ValueError, match="a bug in the solver"):
        extract([two_clips / "good"], tmp_path / "o.zarr", ks=[2], flow_params=TEST_TVL1, workers=1, progress=False)
