"""Faults that used to pass silently or leave debris (issue 12), one test per fault.

Each test failed before its fix: chunk files deleted or damaged behind the store's back,
corrupt metadata, corrupt checkpoints, reused runs with other settings, truncated videos, late
failures and orphaned worker processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from video_clips import write_frames

from flowkit.io.store import FeatureReader
from flowkit.pipeline.extract import TEST_TVL1, extract

REPO = Path(__file__).resolve().parent.parent


def cli(app: str, *args, timeout: float = 300):
    cmd = [sys.executable, "-m", f"cli.{app}_app", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, data_dir, mediapipe_model):
    return write_frames(data_dir / "single_face.mp4", tmp_path_factory.mktemp("faults") / "good", 12)


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    """A complete store of the clip: k=2, 10 windows in chunks of 4 (3 chunks)."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    report = extract([clip], out, ks=[2], flow_params=TEST_TVL1, workers=1, chunk_windows=4, progress=False)
    assert report.ok, report.summary()
    return out


def chunk_file(store: Path, j: int) -> Path:
    return store / "videos" / "good" / "k2" / "features" / "c" / str(j) / "0" / "0" / "0"


def test_deleted_chunk_is_detected_and_recomputed(reference, clip, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    chunk_file(store, 1).unlink()
    reader = FeatureReader(store)
    assert reader.missing_chunks("good", 2) == [1] and not reader.is_complete("good", 2)
    info = cli("flowkit", "info", store)
    assert info.returncode == 0 and "1 lost" in info.stdout
    verify = cli("flowkit", "verify", store)
    assert verify.returncode == 1 and "video good k=2 chunk 1: missing" in verify.stdout
    report = extract([clip], store, ks=[2], flow_params=TEST_TVL1, workers=1, chunk_windows=4, progress=False)
    assert report.ok and report.pairs == 4  # exactly the lost chunk
    np.testing.assert_array_equal(FeatureReader(store).features("good", 2)[:],
                                  FeatureReader(reference).features("good", 2)[:])
    assert FeatureReader(store).is_complete("good", 2)


def test_damaged_chunk_is_reported_then_repaired(reference, clip, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    path = chunk_file(store, 2)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])  # truncated
    verify = cli("flowkit", "verify", store)
    assert verify.returncode == 1 and "video good k=2 chunk 2: undecodable" in verify.stdout
    assert FeatureReader(store).written("good", 2).all(), "verify must not change anything"
    from spotnet.dataset import list_videos, video_windows
    from spotnet.errors import SpotnetError

    with pytest.raises(SpotnetError, match="damaged chunk 2"):
        list(video_windows(store, list_videos(store, 2)[0], batch_size=4))
    assert cli("flowkit", "verify", store, "--repair").returncode == 1
    report = extract([clip], store, ks=[2], flow_params=TEST_TVL1, workers=1, chunk_windows=4, progress=False)
    assert report.ok and report.pairs == 2  # the short last chunk
    assert cli("flowkit", "verify", store).returncode == 0


def test_corrupt_metadata_is_one_line_naming_the_file(reference, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    meta = store / "videos" / "good" / "zarr.json"
    meta.write_text("{not json")
    for app, args in (("flowkit", ("info", store)), ("spotnet", ("train", store, "--out", tmp_path / "run"))):
        r = cli(app, *args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [f"{app}: error: feature store metadata {meta} should be valid "
                                                  "JSON, got a corrupt file"]


def test_corrupt_checkpoint_is_refused(tmp_path):
    from spotnet import SOFTNet, SpotnetError, load_checkpoint, save_model

    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    save_model(SOFTNet(), path, metadata={"k": 6, "type": "micro"})
    with zipfile.ZipFile(path) as z:  # the largest tensor is fc1's weight
        info = max(z.infolist(), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
        f.seek(info.header_offset + 30 + int(name_len) + int(extra_len) + 4096)
        f.write(np.random.default_rng(0).normal(size=256).astype(np.float32).tobytes())  # finite values
    with pytest.raises(SpotnetError, match="corrupt"):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    from test_dataset import make_store

    return make_store(tmp_path_factory.mktemp("small") / "s.zarr", n_frames=120)


def test_changed_recipe_is_refused_and_restart_retrains(small_store, tmp_path):
    from spotnet.errors import SpotnetError
    from spotnet.training import train_loso

    run = tmp_path / "run"
    train_loso(small_store, out_dir=run, expression="macro", epochs=1, progress=False, report=False)
    first = (run / "folds/macro/a.pt").read_bytes()
    with pytest.raises(SpotnetError, match=r"macro fold a with other recipe.lr 0.0005 -> 0.1, recipe.epochs 1 -> 2"):
        train_loso(small_store, out_dir=run, expression="macro", epochs=2, lr=0.1, progress=False, report=False)
    assert (run / "folds/macro/a.pt").read_bytes() == first, "nothing is touched before the refusal"
    train_loso(small_store, out_dir=run, expression="macro", epochs=2, lr=0.1, progress=False, report=False,
               restart=True)
    from spotnet import load_checkpoint

    assert load_checkpoint(run / "folds/macro/a.pt")[1]["recipe"]["epochs"] == 2


def test_subject_counts_are_checked_before_the_first_fold(tmp_path):
    from test_dataset import make_store

    from spotnet.errors import SpotnetError
    from spotnet.training import train_loso

    store = make_store(tmp_path / "s.zarr", subjects=("a", "b"), events=(("macro", 30, 50),), n_frames=100)
    from flowkit.io.store import FeatureStore

    with FeatureStore(store, mode="a") as fs:  # micro intervals for subject a only
        fs.set_video_attrs("a_v0", annotations=[{"onset": 30, "apex": 40, "offset": 50, "type": "macro"},
                                                {"onset": 70, "apex": 71, "offset": 73, "type": "micro"}])
    with pytest.raises(SpotnetError, match="two subjects with micro intervals"):
        train_loso(store, out_dir=tmp_path / "run", expression="all", epochs=1, progress=False)
    assert not list((tmp_path / "run").rglob("*.pt")), "no macro fold may train first"


def test_truncated_video_exits_non_zero(data_dir, mediapipe_model, tmp_path):
    video = tmp_path / "cut.mp4"
    data = (data_dir / "WolfgangLanger_Pexels.mp4").read_bytes()
    video.write_bytes(data[: len(data) * 3 // 10])  # decodes 137 of the 472 frames its header announces
    r = cli("flowkit", "extract", video, tmp_path / "o.zarr", "--k", 130, "--fast", "--workers", 1, "--quiet")
    assert r.returncode == 1, r.stderr
    assert "0 of 1 video(s) extracted" in r.stdout
    assert "truncated: the header announces 472 frames but only 137 decode" in r.stdout
    assert "1 video(s) not extracted: cut (truncated" in r.stderr
    store = FeatureReader(tmp_path / "o.zarr")
    assert store.is_complete("cut", 130), "the decodable frames are kept"
    assert store.features("cut", 130).shape[0] == 137 - 130, "n_frames - k windows, whatever the header said"


def test_video_too_short_for_every_k_exits_non_zero(data_dir, mediapipe_model, tmp_path):
    clip = write_frames(data_dir / "single_face.mp4", tmp_path / "short", 3)
    r = cli("flowkit", "extract", clip, tmp_path / "o.zarr", "--k", 6, "--fast", "--workers", 1, "--quiet")
    assert r.returncode == 1 and "0 of 1 video(s) extracted" in r.stdout
    assert "k=6 skipped: the video has 3 frames" in r.stderr


@pytest.fixture(scope="module")
def keras_micro(shared_dir):
    path = shared_dir / "weights" / "softnet-keras" / "casme2_micro_s1.hdf5"  # k = 6
    if not path.is_file():
        pytest.skip(f"released Keras weights {path} are absent")
    return path


def test_spot_into_a_missing_folder_fails_before_extraction(keras_micro, clip, tmp_path):
    r = cli("spotnet", "spot", keras_micro, clip, "--out", tmp_path / "missing" / "x.csv",
            "--store", tmp_path / "kept.zarr")
    assert r.returncode == 2 and "missing folder" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "kept.zarr").exists(), "nothing may be extracted first"


def test_spot_on_a_folder_keeps_the_good_videos(keras_micro, data_dir, tmp_path):
    folder = tmp_path / "videos"
    write_frames(data_dir / "single_face.mp4", folder / "good", 20)
    write_frames(data_dir / "no_face.mp4", folder / "noface", 8)
    out = tmp_path / "intervals.csv"
    r = cli("spotnet", "spot", keras_micro, folder, "--out", out, "--store", tmp_path / "kept.zarr")
    assert r.returncode == 1, r.stderr
    assert "1 video(s) not spotted: noface (no face found" in r.stderr
    assert out.read_text().startswith("video,onset,offset,type")  # written, even if 20 frames spot nothing
    assert FeatureReader(tmp_path / "kept.zarr").is_complete("good", 6), "the good video's features are kept"


def test_keras_import_type_and_k_for_a_renamed_file(keras_micro, tmp_path):
    renamed = tmp_path / "mymodel.hdf5"
    shutil.copy(keras_micro, renamed)
    r = cli("spotnet", "import-keras", renamed, tmp_path / "m.pt", "--type", "micro", "--k", 6)
    assert r.returncode == 0, r.stderr
    from spotnet import load_checkpoint
    from spotnet.spot import load_spotting_models

    meta = load_checkpoint(tmp_path / "m.pt")[1]
    assert meta["type"] == "micro" and meta["k"] == 6
    folder = tmp_path / "ensemble"
    folder.mkdir()
    shutil.copy(keras_micro, folder / "casme2_micro_s1.hdf5")
    shutil.copy(keras_micro, folder / "casme2_micro_s2.hdf5")
    models = load_spotting_models(folder)  # a folder of .hdf5 files is an ensemble
    assert list(models) == ["micro"] and models["micro"][0] == 6 and len(models["micro"][1]) == 2


def test_evaluate_refuses_files_with_no_video_in_common(tmp_path):
    (tmp_path / "pred.csv").write_text("video,onset,offset,type\nv1,1,10,macro\n")
    (tmp_path / "gt.csv").write_text("video,onset,offset,type\ns15_v1,1,10,macro\n")
    r = cli("spotnet", "evaluate", tmp_path / "pred.csv", tmp_path / "gt.csv")
    assert r.returncode == 2 and "should name the same videos, got none in common" in r.stderr


def _process_tree(pid: int) -> set[int]:
    """pid's descendants, from /proc (children are listed under their parent's pid)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@pytest.mark.system
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc to list processes")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killing_the_cli_leaves_no_process_alive(sig, data_dir, mediapipe_model, tmp_path):
    import signal
    import time

    clip = write_frames(data_dir / "single_face.mp4", tmp_path / "long", 60)
    cmd = [sys.executable, "-m", "cli.flowkit_app", "extract", str(clip), str(tmp_path / "o.zarr"), "--k", "2",
           "--workers", "2", "--chunk-windows", "4", "--quiet"]  # SPEC TV-L1: slow enough to be caught mid-run
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(tree) < 3 and time.monotonic() < deadline:  # forkserver (or tracker) and 2 workers
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
            tree = _process_tree(proc.pid)
        assert len(tree) >= 3, f"the workers never started: {tree}"
        time.sleep(1.0)
        tree |= _process_tree(proc.pid)
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10  # the bound
        while any(_running(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in tree if _running(p)], f"still alive 10 s after {sig}"
        assert proc.returncode != 0
    finally:  # never leave the run behind, even when the test fails
        for p in tree | _process_tree(proc.pid) | {proc.pid}:
            try:
                os.kill(p, 9)
            except OSError:
                pass


def test_annotations_beyond_the_video_are_refused_before_k_is_derived(clip, tmp_path):
    csv = tmp_path / "ann.csv"
    csv.write_text("video,subject,onset,apex,offset,type\n"
                   "good,s1,2,4,6,micro\n"
                   "good,s1,5,40,90,macro\n")  # the clip has 12 frames
    r = cli("flowkit", "extract", clip, tmp_path / "o.zarr", "--annotations", csv, "--fast", "--workers", 1,
            "--quiet")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("flowkit: error: annotation rows should lie within their video, got row "
                                "'good, macro, onset 5, offset 90 (1-based)' beyond the last frame 12 of good")
    assert not (tmp_path / "o.zarr" / "videos").exists()


def test_stderr_carries_only_our_own_lines(data_dir, mediapipe_model, tmp_path):
    """MediaPipe/TFLite and FFmpeg log lines are hidden unless --verbose; warnings are one line."""
    video = tmp_path / "cut.mp4"
    data = (data_dir / "WolfgangLanger_Pexels.mp4").read_bytes()
    video.write_bytes(data[: len(data) * 3 // 10])  # FFmpeg complains about this file
    r = cli("flowkit", "extract", video, tmp_path / "o.zarr", "--k", 130, "--fast", "--workers", 1, "--quiet")
    assert r.stderr and all(line.startswith("flowkit: ") for line in r.stderr.splitlines()), r.stderr
    loud = cli("flowkit", "--verbose", "extract", video, tmp_path / "o2.zarr", "--k", 130, "--fast", "--workers", 1,
               "--quiet")
    assert any(not line.startswith("flowkit: ") for line in loud.stderr.splitlines()), "--verbose shows them"


def test_outputs_get_normal_permissions(tmp_path):
    """Checkpoints and interval CSVs used to be 0600 (mkstemp) while metrics.json was 0644."""
    from spotnet import EvalInterval, SOFTNet, save_model, write_intervals_csv

    old = os.umask(0o022)
    try:
        save_model(SOFTNet(), tmp_path / "m.pt")
        write_intervals_csv(tmp_path / "i.csv", [EvalInterval("v", 0, 9, "macro", 0.5)])
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"m.pt": 0o644, "i.csv": 0o644}
