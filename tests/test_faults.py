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

from flowkit.io.store import FeatureReader, FeatureStore
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
    assert verify.returncode == 1 and "video good k=2 chunk 2: checksum mismatch" in verify.stdout
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


def test_spot_into_an_unwritable_path_fails_before_extraction(keras_micro, clip, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    r = cli("spotnet", "spot", keras_micro, clip, "--out", tmp_path / "taken" / "x.csv",
            "--store", tmp_path / "kept.zarr")
    assert r.returncode == 2 and "should be creatable" in r.stderr and len(r.stderr.splitlines()) == 1
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


def test_annotations_beyond_the_video_are_kept_with_a_warning(clip, tmp_path):
    """As the released code keeps them (SAMM-LV has such rows): frames past the end get no window."""
    csv = tmp_path / "ann.csv"
    csv.write_text("video,subject,onset,apex,offset,type\n"
                   "good,s1,2,4,6,micro\n"
                   "good,s1,5,40,90,macro\n")  # the clip has 12 frames
    r = cli("flowkit", "extract", clip, tmp_path / "o.zarr", "--annotations", csv, "--k", 2, "--fast", "--workers", 1,
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert ("flowkit: warning: annotation row 'good, macro, onset 5, offset 90 (1-based)' ends past the last frame "
            "12 of good; kept") in r.stderr
    assert len(FeatureStore(tmp_path / "o.zarr").annotations("good")) == 2


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


# ---------------------------------------------------------------------- stores that cannot silently lie
def _flip_one_bit(path: Path) -> None:
    """One bit in the middle of a chunk object: inside zstd's payload, so zstd alone still decodes it."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _micro_checkpoint(path: Path, *, k: int = 2, flow_params=None) -> Path:
    from spotnet import SOFTNet, save_model

    torch.manual_seed(0)
    meta = {"type": "micro", "k": k, **({"flow_params": flow_params} if flow_params else {})}
    save_model(SOFTNet(), path, metadata=meta)
    return path


def _annotated_pair(reference: Path, store: Path) -> Path:
    """The reference store with a second subject (a copy of its video), both annotated: LOSO-trainable."""
    import zarr

    shutil.copytree(reference, store)
    shutil.copytree(store / "videos" / "good", store / "videos" / "other")
    for vid, subject in (("good", "s1"), ("other", "s2")):
        g = zarr.open_group(str(store / "videos" / vid), mode="r+")
        g.attrs.update(subject=subject, annotations=[{"onset": 3, "apex": 4, "offset": 5, "type": "micro"}])
    return store


def test_a_flipped_bit_is_named_by_verify_and_refused_by_train_and_spot(reference, tmp_path):
    store = _annotated_pair(reference, tmp_path / "s.zarr")
    _flip_one_bit(chunk_file(store, 1))
    verify = cli("flowkit", "verify", store)
    assert verify.returncode == 1
    assert "video good k=2 chunk 1: checksum mismatch" in verify.stdout
    train = cli("spotnet", "train", store, "--out", tmp_path / "run", "--epochs", 1, "--no-progress",
                "--expression", "micro")
    assert train.returncode == 2, train.stderr
    assert train.stderr.strip().splitlines() == [
        "spotnet: error: features of video good (k=2) should be readable, got a damaged chunk 1 (checksum mismatch "
        "(the chunk was damaged after it was written)); run flowkit verify --repair, then extract"]
    assert not list((tmp_path / "run").rglob("*.pt")), "no model may come from the damaged store"
    spot = cli("spotnet", "spot", _micro_checkpoint(tmp_path / "m.pt"), store, "--out", tmp_path / "i.csv")
    assert spot.returncode == 2 and "damaged chunk 1 (checksum mismatch" in spot.stderr
    assert len(spot.stderr.strip().splitlines()) == 1


def test_repair_unflags_a_flipped_chunk_and_extract_restores_it(reference, clip, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    _flip_one_bit(chunk_file(store, 0))
    assert cli("flowkit", "verify", store, "--repair").returncode == 1
    assert FeatureReader(store).written("good", 2).tolist() == [False, True, True]
    report = extract([clip], store, ks=[2], flow_params=TEST_TVL1, workers=1, chunk_windows=4, progress=False)
    assert report.ok and report.pairs == 4
    np.testing.assert_array_equal(FeatureReader(store).features("good", 2)[:],
                                  FeatureReader(reference).features("good", 2)[:])
    assert cli("flowkit", "verify", store).returncode == 0


def test_a_store_without_checksums_is_named_by_info_and_upgraded_by_repair(reference, tmp_path):
    from test_store import _strip_checksums

    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    _strip_checksums(store)
    info = cli("flowkit", "info", store)
    assert info.returncode == 0 and "3 array(s) lack checksums" in info.stdout  # landmarks, features, written
    verify = cli("flowkit", "verify", store)
    assert verify.returncode == 0 and "lack checksums" in verify.stderr
    repair = cli("flowkit", "verify", store, "--repair")
    assert repair.returncode == 0 and "added checksums to" in repair.stdout
    assert FeatureReader(store).unchecksummed() == []
    np.testing.assert_array_equal(FeatureReader(store).features("good", 2)[:],
                                  FeatureReader(reference).features("good", 2)[:])
    _flip_one_bit(chunk_file(store, 2))
    assert "chunk 2: checksum mismatch" in cli("flowkit", "verify", store).stdout


def test_a_second_setting_cannot_add_videos_to_a_store(reference, data_dir, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    other = write_frames(data_dir / "single_face.mp4", tmp_path / "in" / "new", 8)
    shutil.copytree(_clip_of(reference), tmp_path / "in" / "good")
    r = cli("flowkit", "extract", other.parent, store, "--k", 2, "--fast", "--workers", 1, "--chunk-windows", 4,
            "--quiet")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"flowkit: error: TV-L1 parameters should match those of store {store}, got inner_iterations 5 against 10, "
        "nscales 2 against 3, outer_iterations 1 against 2, warps 1 against 2 (the store's against this run's; "
        "--fast changes them); extract into a new store to use others"]
    assert FeatureReader(store).videos() == ["good"], "the new video is not touched"


def _clip_of(reference: Path) -> Path:
    return Path(FeatureReader(reference).video_attrs("good")["source"])


def test_train_refuses_a_store_whose_videos_disagree(reference, tmp_path):
    import zarr

    store = _annotated_pair(reference, tmp_path / "s.zarr")
    root = zarr.open_group(str(store), mode="r+")
    del root.attrs["flow_params"]  # as written before the root recorded it
    k2 = zarr.open_group(str(store / "videos" / "other" / "k2"), mode="r+")
    k2.attrs["flow_params"] = {**k2.attrs["flow_params"], "nscales": 3}
    r = cli("spotnet", "train", store, "--out", tmp_path / "run", "--epochs", 1, "--no-progress",
            "--expression", "micro")
    assert r.returncode == 2, r.stderr
    assert "should hold features of one TV-L1 setting, got video good k=2 with nscales 2 against 3 in video " \
           "other k=2" in r.stderr
    assert not list((tmp_path / "run").rglob("*.pt"))


def test_train_writes_the_stores_setting_into_every_checkpoint(reference, tmp_path):
    from spotnet import load_checkpoint
    from spotnet.training import train_loso

    store = _annotated_pair(reference, tmp_path / "s.zarr")
    train_loso(store, out_dir=tmp_path / "run", expression="micro", epochs=1, progress=False, report=False)
    params = FeatureReader(store).attrs["flow_params"]
    for ckpt in (tmp_path / "run").rglob("*.pt"):
        assert load_checkpoint(ckpt)[1]["flow_params"] == params


def test_spot_refuses_a_checkpoint_of_other_tvl1_parameters_unless_forced(reference, tmp_path):
    from flowkit.flow.params import check_params

    spec = check_params({}).to_dict()  # OpenCV's defaults, as extracted without --fast
    model = _micro_checkpoint(tmp_path / "m.pt", flow_params=spec)
    r = cli("spotnet", "spot", model, reference, "--out", tmp_path / "i.csv")
    assert r.returncode == 2 and not (tmp_path / "i.csv").exists()
    assert r.stderr.strip().splitlines() == [
        f"spotnet: error: TV-L1 parameters of checkpoint {model} should match store {reference}'s, got "
        "inner_iterations 30 against 5, nscales 5 against 2, outer_iterations 10 against 1, warps 5 against 1 (the "
        f"checkpoint's against store {reference}'s); pass --force to spot anyway"]
    forced = cli("spotnet", "spot", model, reference, "--out", tmp_path / "i.csv", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "spotnet: warning: TV-L1 parameters of checkpoint" in forced.stderr and "(--force)" in forced.stderr


# ---------------------------------------------------------------------- exit codes and messages
def test_corrupt_array_metadata_exits_2_on_extract(reference, clip, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    meta = store / "videos" / "good" / "k2" / "features" / "zarr.json"
    meta.write_text("{not json")
    r = cli("flowkit", "extract", clip, store, "--k", 2, "--workers", 1, "--quiet")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"flowkit: error: feature store metadata {meta} should be valid JSON, got a corrupt file"


@pytest.mark.parametrize("option", [("--scheduler", "local:x"), ("--model", "missing.task")])
def test_bad_options_are_refused_before_the_store_is_created(option, clip, tmp_path):
    r = cli("flowkit", "extract", clip, tmp_path / "o.zarr", "--k", 2, *option, "--quiet")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.zarr").exists()


def test_missing_output_folders_are_created_by_every_command(reference, tmp_path):
    model = _micro_checkpoint(tmp_path / "m.pt")
    r = cli("spotnet", "spot", model, reference, "--out", tmp_path / "new" / "deeper" / "i.csv")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "new" / "deeper" / "i.csv").is_file()


def test_a_chunk_setting_mismatch_names_the_option_and_both_values(reference, clip, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    report = extract([clip], store, ks=[2], flow_params=TEST_TVL1, workers=1, chunk_windows=8, progress=False)
    assert report.failures and "made with a different --chunk-windows (4 in the store against 8)" in \
        report.failures[0].message


def test_usage_errors_are_one_sentence(tmp_path):
    r = cli("flowkit", "extract", "--bogus")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "flowkit: error: No such option: --bogus (Possible options: --gpu); see 'flowkit extract --help'"]
    r = cli("spotnet", "train", tmp_path, "--epochs", "x")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("spotnet: error: Invalid value for '--epochs'")


def test_train_while_an_extract_writes_says_so(reference, tmp_path):
    from flowkit.io.store import FeatureStore
    from spotnet.dataset import list_videos
    from spotnet.errors import SpotnetError

    store = tmp_path / "s.zarr"
    shutil.copytree(reference, store)
    with FeatureStore(store, mode="a") as writer:  # an extract in progress: lock held, a chunk to do
        writer.unflag_chunks("good", 2, [2])
        with pytest.raises(SpotnetError, match=rf"got an extraction still writing it \(pid {os.getpid()}\); wait"):
            list_videos(store, 2)
    with pytest.raises(SpotnetError, match="got an interrupted extraction; run flowkit extract again"):
        list_videos(store, 2)


# ---------------------------------------------------------------------- faces
def test_live_without_a_face_exits_2_with_one_line(keras_micro, data_dir, mediapipe_model):
    r = cli("spotnet", "live", keras_micro, data_dir / "no_face.mp4", "--quiet")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"spotnet: error: a face should appear in {data_dir / 'no_face.mp4'}, got none in its 95 frame(s)"]


def test_live_on_a_missing_camera_is_one_line(keras_micro, mediapipe_model):
    r = cli("spotnet", "live", keras_micro, "7", "--quiet")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["spotnet: error: camera '7' should open for reading, got a refusal"]


@pytest.mark.parametrize("shape", ["wide", "tall"])
def test_a_face_on_a_very_wide_or_tall_frame_is_found(shape, data_dir, mediapipe_model):
    import cv2

    from flowkit.face.landmarks import make_landmarker

    cap = cv2.VideoCapture(str(data_dir / "single_face.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    with make_landmarker("mediapipe", model_path=mediapipe_model) as landmarker:
        if shape == "wide":  # 4000x300, the face 1700 px from the left
            small = cv2.resize(frame, (533, 300))
            big = np.zeros((300, 4000, 3), np.uint8)
            big[:, 1700:1700 + 533] = small
            offset = np.float32([1700, 0])
        else:  # 300x4000, the face 2000 px from the top
            small = cv2.resize(frame, (300, 169))
            big = np.zeros((4000, 300, 3), np.uint8)
            big[2000:2000 + 169] = small
            offset = np.float32([0, 2000])
        alone = landmarker.detect(small)
        found = landmarker.detect(big)
    assert alone is not None and found is not None
    # The same face as on the small frame, moved by the padding: tiles cut the frame, never rescale it.
    # Tolerance 2 px: MediaPipe sees another image around the face (other tile borders).
    np.testing.assert_allclose(found.points, alone.points + offset, atol=2.0)


# ---------------------------------------------------------------------- stop when told
#: Each engine's options; --fast TV-L1 keeps the runs short, chunks of 2 windows give many flags.
ENGINES = {
    "inline": ("--workers", "1"),
    "processes": ("--workers", "2"),
    "batched": ("--flow-backend", "torch", "--decoders", "2"),
    "dask-local": ("--scheduler", "local:2"),
}


@pytest.fixture(scope="module")
def long_clip(data_dir, mediapipe_model, tmp_path_factory):
    return write_frames(data_dir / "single_face.mp4", tmp_path_factory.mktemp("signals") / "long", 60)


def _extract_cmd(clip: Path, store: Path, engine: str) -> list[str]:
    return [sys.executable, "-m", "cli.flowkit_app", "extract", str(clip), str(store), "--k", "2", "--fast",
            "--chunk-windows", "2", "--unit-windows", "2", "--quiet", *ENGINES[engine]]


def _flags(store: Path) -> int:
    return len(list(store.glob("videos/*/k2/written/c/*")))


def _signal_mid_run(cmd: list[str], store: Path, sig) -> tuple[int, float, float]:
    """Start ``cmd``, send ``sig`` to its pid alone once a new chunk is flagged; (exit code, seconds
    until the driver exited, seconds until it and every process it started were gone)."""
    import time

    before = _flags(store) if store.exists() else 0
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while (not store.exists() or _flags(store) <= before) and time.monotonic() < deadline:
            assert proc.poll() is None, f"the run ended before it could be signalled: {proc.communicate()}"
            tree |= _process_tree(proc.pid)
            time.sleep(0.02)
        tree |= _process_tree(proc.pid)
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        exited = time.monotonic() - t0
        while any(_running(p) for p in tree) and time.monotonic() - t0 < 10:  # the bound
            time.sleep(0.02)
        gone = time.monotonic() - t0
        assert not [p for p in tree if _running(p)], f"processes still alive 10 s after {sig!r}"
        stderr = proc.stderr.read()
        name = "SIGTERM" if sig == 15 else "SIGINT"
        assert stderr.strip().splitlines() == [f"flowkit: stopped by {name}; what was complete is kept, and the "
                                               "same command resumes"], stderr
        return proc.returncode, exited, gone
    finally:
        for p in tree | _process_tree(proc.pid) | {proc.pid}:
            try:
                os.kill(p, 9)
            except OSError:
                pass


@pytest.fixture(scope="module")
def signal_references(long_clip, tmp_path_factory):
    """Uninterrupted stores of the long clip, one per backend (opencv, torch), computed inline."""
    from flowkit.pipeline.extract import FAST_TVL1

    out = {}
    for backend in ("opencv", "torch"):
        store = tmp_path_factory.mktemp("sigref") / f"{backend}.zarr"
        report = extract([long_clip], store, ks=[2], flow_params=FAST_TVL1, flow_backend=backend, workers=1,
                         chunk_windows=2, progress=False)
        assert report.ok, report.summary()
        out[backend] = FeatureReader(store).features("long", 2)[:]
    return out


@pytest.mark.system
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc to list processes")
@pytest.mark.parametrize("engine", list(ENGINES))
def test_sigterm_then_sigint_stop_every_engine_and_resume_identically(engine, long_clip, signal_references,
                                                                       tmp_path, capsys):
    import signal

    if engine == "dask-local":
        pytest.importorskip("distributed", reason="the dask extra is not installed")
    store = tmp_path / "o.zarr"
    cmd = _extract_cmd(long_clip, store, engine)
    times = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        code, exited, gone = _signal_mid_run(cmd, store, sig)
        assert code == 128 + sig, f"{sig!r} should end the run with {128 + sig}, got {code}"
        times[sig.name] = (round(exited, 2), round(gone, 2))
        reader = FeatureReader(store)
        assert not reader.is_complete("long", 2) and reader.written("long", 2).any()
    # The resume runs in this process (its imports are done): resuming does not depend on the engine.
    from flowkit.pipeline.extract import FAST_TVL1

    backend = "torch" if engine == "batched" else "opencv"
    report = extract([long_clip], store, ks=[2], flow_params=FAST_TVL1, flow_backend=backend, workers=1,
                     chunk_windows=2, progress=False)
    assert report.ok and 0 < report.pairs < 58, report.summary()  # only what the two stopped runs left
    np.testing.assert_array_equal(FeatureReader(store).features("long", 2)[:], signal_references[backend])
    with capsys.disabled():  # the measured stop times, for the record (never asserted beyond the 10 s bound)
        print(f"\n{engine}: seconds to exit / to every process gone: {times}")


def test_a_face_lost_for_most_of_a_video_is_named_in_the_summary(data_dir, mediapipe_model, tmp_path):
    import cv2

    folder = tmp_path / "leaves"
    folder.mkdir()
    face, empty = cv2.VideoCapture(str(data_dir / "single_face.mp4")), cv2.VideoCapture(str(data_dir / "no_face.mp4"))
    size = None
    for i in range(50):  # the face for 8 frames, then a scene without one
        ok, frame = (face if i < 8 else empty).read()
        assert ok
        size = size or frame.shape[1::-1]
        cv2.imwrite(str(folder / f"img{i + 1}.png"), cv2.resize(frame, size))
    face.release()
    empty.release()
    r = cli("flowkit", "extract", folder, tmp_path / "o.zarr", "--k", 6, "--fast", "--workers", 1, "--quiet")
    assert r.returncode == 0, r.stderr
    assert ("leaves: face lost in 84% of the frames (1-based: 9-50); their windows are stored as computed from "
            "the fixed crop box") in r.stdout
    store = FeatureReader(tmp_path / "o.zarr")
    assert store.video_attrs("leaves")["face_lost"] == [[8, 49]]
    assert store.is_complete("leaves", 6), "the windows are stored, as the released code does"


@pytest.mark.system
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc to list processes")
def test_sigterm_under_a_remote_dask_cluster_cancels_the_runs_tasks(long_clip, signal_references, tmp_path):
    import signal
    import time

    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    from flowkit.pipeline.extract import FAST_TVL1

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        store = tmp_path / "o.zarr"
        cmd = [*_extract_cmd(long_clip, store, "inline")[:-2], "--scheduler", cluster.scheduler_address]
        code, exited, _ = _signal_mid_run(cmd, store, signal.SIGTERM)
        assert code == 143
        deadline = time.monotonic() + 10  # the unit a worker was running ends; nothing else of the run starts
        while time.monotonic() < deadline and any(client.processing().values()):
            time.sleep(0.1)
        assert not any(client.processing().values()), "the run's tasks should be cancelled"
        assert len(client.scheduler_info()["workers"]) == 1, "a remote cluster's workers are not ours to stop"
    report = extract([long_clip], store, ks=[2], flow_params=FAST_TVL1, workers=1, chunk_windows=2, progress=False)
    assert report.ok
    np.testing.assert_array_equal(FeatureReader(store).features("long", 2)[:], signal_references["opencv"])
