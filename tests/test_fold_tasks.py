"""Groups of LOSO folds as Dask tasks: the same run as on one machine, and a killed worker costs its group only.

The local:N case starts flowkit's embedded cluster (seconds); the killed-worker case starts a real
``dask scheduler`` and two ``dask worker`` processes (tests/test_dask_engine.dask_cluster) and is
marked ``system``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from test_dataset import make_store

pytest.importorskip("distributed", reason="the dask extra (dask, distributed) is not installed")

from test_dask_engine import RUN_S, dask_cluster  # noqa: E402 - after the skip
from test_fold_parallel import EVENTS, SUBJECTS, TOL, _max_diff  # noqa: E402

from spotnet.checkpoint import load_checkpoint  # noqa: E402
from spotnet.errors import SpotnetError  # noqa: E402
from spotnet.training import train_loso  # noqa: E402

OPTIONS = {"expression": "macro", "epochs": 1, "progress": False, "report": False, "parallel_folds": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ft") / "s.zarr", subjects=SUBJECTS, n_frames=100, events=EVENTS)


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    return out, train_loso(store, out_dir=out, **OPTIONS)


def _same_run(out, reference) -> None:
    ref_out, ref_result = reference
    assert json.loads((out / "metrics.json").read_text())["macro"] == ref_result.to_dict()["macro"]
    assert (out / "intervals.csv").read_text() == (ref_out / "intervals.csv").read_text()
    for s in SUBJECTS:
        a, _ = load_checkpoint(out / "folds/macro" / f"{s}.pt")
        b, _ = load_checkpoint(ref_out / "folds/macro" / f"{s}.pt")
        assert _max_diff(a, b) <= TOL


def test_groups_on_a_local_cluster(store, reference, tmp_path):
    train_loso(store, out_dir=tmp_path, scheduler="local:1", **OPTIONS)
    _same_run(tmp_path, reference)


def test_bad_scheduler(store, tmp_path):
    with pytest.raises(SpotnetError, match="scheduler should be"):
        train_loso(store, out_dir=tmp_path, scheduler="nowhere", **OPTIONS)


@pytest.mark.system
def test_worker_killed_mid_group(store, reference, tmp_path):
    out = tmp_path / "run"
    with dask_cluster(tmp_path / "cluster") as cluster:
        from distributed import Client

        with Client(cluster.address, timeout="30s") as client:
            names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
            result: dict = {}

            def run() -> None:
                try:
                    result["run"] = train_loso(store, out_dir=out, scheduler=cluster.address, **OPTIONS)
                except BaseException as exc:  # re-raised in the test's thread
                    result["error"] = exc

            driver = threading.Thread(target=run, name="train", daemon=True)
            driver.start()
            victim, deadline = None, time.monotonic() + RUN_S
            while victim is None and driver.is_alive() and time.monotonic() < deadline:
                busy = [addr for addr, keys in client.processing().items()
                        if any(str(key).startswith("spotnet-folds-") for key in keys)]
                if busy:
                    victim = names[busy[0]]
                    os.killpg(cluster.workers[victim].pid, signal.SIGKILL)
                    break
                time.sleep(0.02)
            assert victim is not None, "a group should be running when a worker is killed"
            driver.join(timeout=RUN_S)
            assert not driver.is_alive(), f"training should finish with one worker left\n{cluster.logs()}"
    if "error" in result:
        raise result["error"]
    _same_run(out, reference)
