"""flowkit.pipeline.extract on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on 127.0.0.1,
started and stopped here, with every wait bounded.

- the features equal a local (inline) run bit for bit;
- the same holds when one worker is SIGKILLed mid-run (Dask runs its units again elsewhere);
- a video without a face fails alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from video_clips import write_frames

pytest.importorskip("distributed", reason="the dask extra (dask, distributed) is not installed")

from distributed import Client  # noqa: E402 - after the skip

from flowkit.io.store import FeatureReader  # noqa: E402
from flowkit.pipeline.extract import TEST_TVL1, extract  # noqa: E402

#: A real `dask scheduler` and real workers, one of them killed: system tests (`-m "not system"` skips them).
pytestmark = pytest.mark.system
REPO = Path(__file__).resolve().parent.parent
DASK = Path(sys.executable).parent / "dask"
#: A cold worker imports numpy, OpenCV and torch: seconds, more on a busy 2-core machine.
START_S = 60
#: One extraction of the clips below takes seconds; the bound only stops a hang.
RUN_S = 240
#: Small units (one chunk each, every k) so that each video spreads over both workers.
OPTIONS = {"ks": [2, 6], "flow_params": TEST_TVL1, "chunk_windows": 8, "unit_windows": 8, "progress": False}


@dataclass
class Cluster:
    """A scheduler and its workers, each process the leader of its own process group."""

    folder: Path
    scheduler: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def scheduler_file(self) -> Path:
        return self.folder / "sched.json"

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.folder.glob("*.log")))

    def _start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "wb") as log:
            # Own session: killpg reaches the worker's nanny and its worker process together.
            return subprocess.Popen([str(DASK), *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is not None:
                _signal_group(proc, signal.SIGTERM)
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=15)
            _signal_group(proc, signal.SIGKILL)  # anything its leader left behind


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the group is gone already
        pass


def _wait_for(what: str, ready, cluster: Cluster, timeout: float = START_S) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{cluster.logs()}"
        time.sleep(0.1)


@contextmanager
def dask_cluster(folder: Path, n_workers: int = 2) -> Iterator[Cluster]:
    """``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` s named w1, w2, ..., stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(folder)
    # Workers import flowkit from this checkout; one OpenCV/BLAS thread each, as on a shared machine.
    # DASK_CONFIG: the worker settings docs/distributed.md gives (docs/dask/flowkit.yaml).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "DASK_CONFIG": str(REPO / "docs" / "dask")}
    try:
        cluster.scheduler = cluster._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", "0",
                                                         "--no-dashboard", "--scheduler-file",
                                                         str(cluster.scheduler_file)])
        _wait_for("the scheduler should write its file",
                  lambda: cluster.scheduler_file.is_file() or cluster.scheduler.poll() is not None, cluster)
        assert cluster.scheduler.poll() is None, f"the scheduler should run\n{cluster.logs()}"
        _wait_for("the scheduler file should name an address", lambda: _has_address(cluster), cluster)
        for n in range(1, n_workers + 1):
            name = f"w{n}"
            # --death-timeout: a worker whose scheduler vanished exits by itself, should teardown be missed.
            cluster.workers[name] = cluster._start(
                name, ["worker", cluster.address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                       "--name", name, "--local-directory", str(folder / name), "--death-timeout", "60"], env)
        with Client(cluster.address, timeout="30s") as client:
            try:
                client.wait_for_workers(n_workers, timeout=START_S)
            except TimeoutError:
                pytest.fail(f"{n_workers} workers should join within {START_S} s\n{cluster.logs()}")
        yield cluster
    finally:
        cluster.stop()


def _has_address(cluster: Cluster) -> bool:
    try:
        return bool(cluster.address)
    except (ValueError, KeyError):  # written but not yet complete
        return False


@pytest.fixture(scope="module")
def clips(tmp_path_factory, data_dir, mediapipe_model):
    """Two short image folders with a face; ``no_face.mp4`` is used as it is (no face in any frame)."""
    root = tmp_path_factory.mktemp("dask_clips")
    write_frames(data_dir / "single_face.mp4", root / "good", 40)
    write_frames(data_dir / "WolfgangLanger_Pexels.mp4", root / "lady", 16)
    return [root / "good", root / "lady"]


@pytest.fixture(scope="module")
def local_store(clips, tmp_path_factory):
    """The reference: the same clips extracted in this process (workers=1)."""
    store = tmp_path_factory.mktemp("local") / "local.zarr"
    report = extract(clips, store, workers=1, **OPTIONS)
    assert report.ok, report.summary()
    return store


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def dask_run(cluster, clips, data_dir, tmp_path_factory):
    """The clips and the face-less video, extracted on the cluster."""
    store = tmp_path_factory.mktemp("dask") / "dask.zarr"
    with warnings.catch_warnings():
        # no_face.mp4's header announces 3 frames more than decode: expected, and beside the point here.
        warnings.filterwarnings("ignore", message=".*header announces", category=UserWarning)
        report = extract([clips[0], data_dir / "no_face.mp4", clips[1]], store, scheduler=cluster.address, **OPTIONS)
    return store, report


def assert_same_features(store: Path, reference: Path) -> None:
    got, want = FeatureReader(store), FeatureReader(reference)
    assert got.videos() == want.videos()
    for v in want.videos():
        assert got.ks(v) == want.ks(v) == [2, 6]
        for k in want.ks(v):
            assert got.is_complete(v, k), f"{v} k={k}"
            a, b = got.features(v, k)[:], want.features(v, k)[:]
            # Deterministic single-threaded TV-L1 and features on both sides: the same bytes.
            assert a.shape == b.shape and np.array_equal(a, b), f"{v} k={k}"


def _malloc_trim_of_workers(client: Client) -> set:
    return set(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())


def test_workers_keep_glibc_memory_defaults(cluster):
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_ (units then run ~5 % slower); docs/dask/flowkit.yaml,
    which docs/distributed.md gives to `dask worker`, leaves it unset, as flowkit's own local:N cluster does."""
    from flowkit.pipeline.engines import DaskEngine
    from flowkit.pipeline.extract import resolve_settings

    with Client(cluster.address, timeout="30s") as client:
        assert _malloc_trim_of_workers(client) == {None}
    engine = DaskEngine(resolve_settings(workers=1), "local:1")
    try:
        assert _malloc_trim_of_workers(engine.client) == {None}
    finally:
        engine.close()


def test_features_equal_a_local_run(dask_run, local_store):
    store, report = dask_run
    assert report.engine["engine"] == "dask" and report.engine["workers"] == 2
    assert_same_features(store, local_store)


def test_video_without_a_face_fails_alone(dask_run):
    _, report = dask_run
    status = {v.video_id: (v.status, v.message) for v in report.videos}
    assert [v.video_id for v in report.videos] == ["good", "no_face", "lady"]  # the input order
    assert status["no_face"][0] == "failed" and "no face" in status["no_face"][1]
    assert status["good"] == ("done", "") and status["lady"] == ("done", "")
    assert [v.video_id for v in report.failures] == ["no_face"]


def _flags(store: Path) -> int:
    """Chunks flagged written so far: one object per true flag (workers write them after the chunk)."""
    return sum(1 for _ in store.glob("videos/*/k*/written/c/*"))


def test_worker_killed_mid_run_changes_nothing(clips, local_store, tmp_path):
    # Its own cluster: this test leaves it one worker short.
    reference = FeatureReader(local_store)
    n_chunks = sum(reference.written(v, k).size for v in reference.videos() for k in reference.ks(v))
    store = tmp_path / "killed.zarr"
    with dask_cluster(tmp_path / "cluster") as cluster, Client(cluster.address, timeout="30s") as client:
        names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
        out: dict = {}

        def run() -> None:
            try:
                out["report"] = extract(clips, store, scheduler=cluster.address, **OPTIONS)
            except BaseException as exc:  # re-raised in the test's thread
                out["error"] = exc

        driver = threading.Thread(target=run, name="extract", daemon=True)
        driver.start()
        # Kill once a unit has finished (the workers are warm) and a worker holds a unit still to write.
        victim = None
        deadline = time.monotonic() + RUN_S
        while victim is None and driver.is_alive() and time.monotonic() < deadline:
            if _flags(store) >= 1:
                busy = [addr for addr, keys in client.processing().items()
                        if any(str(key).startswith("flowkit-unit-") for key in keys)]
                if busy:
                    victim = names[busy[0]]
                    flags_at_kill = _flags(store)
                    os.killpg(cluster.workers[victim].pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
        assert victim is not None, "the run should still be going when a worker is killed: make the clips longer"
        assert flags_at_kill < n_chunks
        assert cluster.workers[victim].wait(timeout=30) == -signal.SIGKILL
        driver.join(timeout=RUN_S)
        assert not driver.is_alive(), f"extract should finish with one worker left\n{cluster.logs()}"
        assert len(client.scheduler_info()["workers"]) == 1
    if "error" in out:
        raise out["error"]
    report = out["report"]
    assert report.ok, report.summary()
    assert [v.status for v in report.videos] == ["done", "done"]
    assert_same_features(store, local_store)
