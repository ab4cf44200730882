"""The batched engine's pipeline (upload, solve, features in their own threads) and the stage
timings every engine reports, on synthetic JPEG folders recorded as prepared (no face detection)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flowkit.pipeline import engines
from flowkit.pipeline.extract import TEST_TVL1, ExtractionSettings, extract
from flowkit.pipeline.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "gpu"))
import engine_check  # noqa: E402 - the synthetic inputs of tools/gpu/engine_check.py

BOX = (40, 20, 120, 100)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    folders = engine_check.write_inputs(root, 2, 20, (160, 120), False, processes=1)
    return root, folders


def _extract(inputs, store: Path, *, flow_backend: str = "torch", **options):
    root, folders = inputs
    engine_check.prepared_store(store, folders, BOX, engine_check.synthetic_landmarks())
    device = {"device": "cpu"} if flow_backend == "torch" else {}
    return extract([root], store, ks=[2, 6], flow_backend=flow_backend, **device, flow_params=TEST_TVL1,
                   progress=False, face_check=False, **options)


def _features(store: Path) -> dict:
    from flowkit.io.store import FeatureReader

    reader = FeatureReader(store)
    return {(v, k): reader.features(v, k)[:] for v in reader.videos() for k in reader.ks(v)}


def _wait_for(predicate, what: str, timeout_s: float = 30.0) -> None:
    """Block until ``predicate()``; a deadlock guard, not a timing: a serial engine never gets there."""
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"the pipeline should have {what} while the solver waits, got nothing")
        time.sleep(0.005)


def test_a_slow_solver_overlaps_the_next_upload_and_the_last_features(inputs, tmp_path, monkeypatch):
    """The solver of batch 0 waits until batch 1 is uploaded, and the solver of batch 1 until the
    features of batch 0 are done: possible only if those stages run beside the solver. The trace's
    timestamps then show the overlap."""
    captured = []
    make = engines.make_engine
    monkeypatch.setattr(engines, "make_engine", lambda *a, **k: captured.append(make(*a, **k)) or captured[-1])
    solve = ExtractionSettings.solve
    calls = []

    def slow_solve(self, prev, nxt):
        n = len(calls)
        calls.append(n)
        trace = captured[0].trace
        if n == 0:
            _wait_for(lambda: any(s == "upload" and b == 1 for s, b, *_ in trace), "uploaded batch 1")
        elif n == 1:
            _wait_for(lambda: any(s == "finish" and b == 0 for s, b, *_ in trace), "finished batch 0")
        return solve(self, prev, nxt)

    monkeypatch.setattr(ExtractionSettings, "solve", slow_solve)
    report = _extract(inputs, tmp_path / "s.zarr", batch_windows=16, decoders=1)
    assert report.ok and len(calls) >= 3
    span = {(s, b): (t0, t1) for s, b, t0, t1 in captured[0].trace}
    assert span[("upload", 1)][1] < span[("solve", 0)][1]  # batch 1 uploaded while batch 0 was solved
    assert span[("finish", 0)][1] < span[("solve", 1)][1]  # batch 0's features while batch 1 was solved
    assert span[("solve", 0)][1] <= span[("solve", 1)][0]  # one solver: its batches in turn
    threads = {t.name for t in threading.enumerate()}
    assert not any(name.startswith("flowkit-solve") for name in threads)  # closed with the run


def test_the_pipeline_gives_the_bits_of_one_batch_at_a_time(inputs, tmp_path, monkeypatch):
    """Depth 3 (upload, solve, features at once) against depth 1 (each batch through every stage
    before the next, as one thread did it all): bitwise equal. (Batched against the inline engine:
    tests/test_engines.py.)"""
    piped = _extract(inputs, tmp_path / "piped.zarr", batch_windows=16, decoders=1)
    assert piped.engine["depth"] == engines.PIPELINE_DEPTH > 1
    monkeypatch.setattr(engines, "PIPELINE_DEPTH", 1)
    serial = _extract(inputs, tmp_path / "serial.zarr", batch_windows=16, decoders=1)
    assert serial.engine["depth"] == 1
    a, b = (_features(tmp_path / f"{name}.zarr") for name in ("piped", "serial"))
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("options", [{"decoders": 2, "batch_windows": 16}, {"workers": 1, "flow_backend": "opencv"},
                                     {"workers": 2, "flow_backend": "opencv"}], ids=["batched", "inline", "processes"])
def test_every_engine_reports_its_stage_timings(inputs, tmp_path, options):
    report = _extract(inputs, tmp_path / "s.zarr", **options)
    stages = report.stages
    for key in ("prepare_s", "decode_s", "solve_s", "features_s", "write_s", "engine_wall_s", "solver_idle_share"):
        assert key in stages, key
    assert list(stages) == [k for k in STAGES if k in stages]
    assert all(v >= 0 for v in stages.values()) and 0 <= stages["solver_idle_share"] <= 1
    assert stages["solve_s"] > 0 and stages["decode_s"] > 0
    assert stages["prepare_s"] + stages["engine_wall_s"] <= report.seconds
    if report.engine["engine"] == "batched":
        assert "upload_s" in stages and 0 < stages["decode_wall_s"] <= stages["decode_s"] + 1e-3
    assert "stages: prepare" in report.summary() and "solver idle" in report.summary()


def test_extract_json_prints_the_report_with_its_stages(inputs, tmp_path):
    from typer.testing import CliRunner

    from cli.flowkit_app import app

    root, folders = inputs
    store = tmp_path / "s.zarr"
    engine_check.prepared_store(store, folders, BOX, engine_check.synthetic_landmarks())
    result = CliRunner().invoke(app, ["extract", str(root), str(store), "--k", "2", "--flow-backend", "torch",
                                      "--device", "cpu", "--fast", "--quiet", "--json", "--decoders", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["pairs"] == 2 * 18 and {v["status"] for v in data["videos"]} == {"done"}
    assert data["stages"]["solve_s"] > 0 and "engine_wall_s" in data["stages"]
    assert data["engine"]["impl"] == "eager"
