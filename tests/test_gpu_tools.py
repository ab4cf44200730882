"""The GPU tools (tools/gpu/) on the CPU: the engine check's carried wheels and smoke run, and the
batch-sizing table against the measurement it comes from and the page that shows it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "tools" / "gpu" / "requirements-engine-check.txt"


def _pins() -> dict[str, str]:
    lines = [ln.strip() for ln in REQUIREMENTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("==") for ln in lines)


def test_the_carried_requirements_are_all_pinned():
    lines = [ln.strip() for ln in REQUIREMENTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines and all("==" in ln and ";" not in ln for ln in lines)
    assert "zarr" in _pins() and "numpy" not in _pins()  # numpy is the image's own (torch needs it)


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def _pip(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
                          capture_output=True, text=True, timeout=timeout)


def test_carried_wheels_install_into_an_empty_target_and_import_zarr(tmp_path):
    """The runbook's download (CPython 3.12, manylinux) resolves, and the same pins for this
    interpreter, installed with --no-deps into an empty target, import zarr and round-trip an array
    with nothing else on the path but numpy and the standard library."""
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is unreachable from this machine")
    gpu = _pip("download", "--only-binary", ":all:", "--no-deps", "--python-version", "3.12", "--platform",
               "manylinux2014_x86_64", "-d", str(tmp_path / "gpu"), "-r", str(REQUIREMENTS))
    assert gpu.returncode == 0, gpu.stderr[-2000:]
    assert len(list((tmp_path / "gpu").glob("*.whl"))) == len(_pins())
    here = _pip("download", "--only-binary", ":all:", "--no-deps", "-d", str(tmp_path / "here"), "-r",
                str(REQUIREMENTS))
    assert here.returncode == 0, here.stderr[-2000:]
    target = tmp_path / "target"
    wheels = sorted(str(p) for p in (tmp_path / "here").glob("*.whl"))
    done = _pip("install", "--no-index", "--no-deps", "--target", str(target), *wheels)
    assert done.returncode == 0, done.stderr[-2000:]
    import numpy

    only_numpy = tmp_path / "numpy_only"
    only_numpy.mkdir()
    site = Path(numpy.__file__).resolve().parent.parent
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (only_numpy / name).symlink_to(site / name)
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import zarr, numpy as np; "
            "z = zarr.open_array(sys.argv[3], mode='w', shape=(4, 3), chunks=(2, 3), dtype='f4'); "
            "z[:] = np.arange(12, dtype='f4').reshape(4, 3); "
            "assert zarr.__file__.startswith(sys.argv[1]), zarr.__file__; "
            "assert (zarr.open_array(sys.argv[3], mode='r')[:] == np.arange(12).reshape(4, 3)).all(); "
            "print(zarr.__version__)")
    args = [str(target), str(only_numpy), str(tmp_path / "a.zarr")]
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == _pins()["zarr"]


def test_engine_check_smoke_run_on_the_cpu(tmp_path):
    """tools/gpu/engine_check.py --smoke: both inputs, two runs each, every recorded field."""
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu" / "engine_check.py"), "--smoke", "--out",
                           str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    env_rec = report["environment"]
    assert {"commit", "torch", "triton", "python", "device"} <= set(env_rec)
    assert all(step.get("equal") for step in report["batch_invariance"].values())
    for name, gray in (("casme2_like", False), ("samm_like", True)):
        entry = report["inputs"][name]
        assert entry["jpeg"] == ("grayscale" if gray else "colour") and len(entry["runs"]) == 2
        assert entry["repeat_equal"] is True
        for run in entry["runs"]:
            assert run["pairs"] > 0 and run["pairs_per_s"] > 0 and run["impl"] == "eager" and run["batch"] >= 1
            assert {"prepare_s", "decode_s", "decode_wall_s", "upload_s", "solve_s", "features_s", "download_s",
                    "write_s", "solver_idle_share"} <= set(run["stages"])


def test_the_sizing_table_is_the_measured_curve_and_the_page_shows_it():
    from flowkit.flow.memory import batch_target, sizing_table, sizing_table_markdown

    table = sizing_table()
    measured = json.loads((ROOT / table["source"]).read_text())["throughput"]
    for impl, row in table["impls"].items():
        curve = {str(r["batch"]): r["pairs_per_s"] for r in measured[impl]}
        assert row["pairs_per_s_by_batch"] == curve, impl
        assert row["measured_peak_bytes_per_pixel"] == max(r["peak_bytes_per_px"] for r in measured[impl])
        assert row["bytes_per_pixel"] > row["measured_peak_bytes_per_pixel"]  # the margin
    best = max(table["impls"]["triton-strips"]["pairs_per_s_by_batch"].items(), key=lambda kv: kv[1])
    assert batch_target("triton-strips") <= int(best[0])
    assert sizing_table_markdown() in (ROOT / "docs" / "gpu.md").read_text()


def test_batch_target_follows_the_curve(tmp_path, monkeypatch):
    """The smallest batch within target_share of the best; the cap is the largest measured batch."""
    from flowkit.flow import memory

    table = {"source": "-", "target_share": 0.9, "impls": {
        "eager": {"bytes_per_pixel": 400, "measured_peak_bytes_per_pixel": 300,
                  "pairs_per_s_by_batch": {"64": 10, "256": 95, "1024": 99, "4096": 100}}}}
    path = tmp_path / "sizing.json"
    path.write_text(json.dumps(table))
    monkeypatch.setattr(memory, "TABLE", path)
    memory.sizing_table.cache_clear()
    try:
        assert memory.batch_target("eager") == 256 and memory.batch_cap("eager") == 4096
        assert memory.pairs_per_batch(free_bytes=10**12, impl="eager") == 4096
        assert memory.pairs_per_batch(free_bytes=10 * 400 * 128 * 128, fraction=1.0, impl="eager") == 10
    finally:
        memory.sizing_table.cache_clear()


def test_implied_bandwidth_counts_only_the_launches_that_step_the_state():
    """gpu_check's implied_dram_gb_per_s: a launch log of two 5-step launches and the settle's
    redo launches (one step each, declared with a whole step's bytes) counts the two alone."""
    sys.path.insert(0, str(ROOT / "tools" / "gpu"))
    from gpu_check import stepping_bytes

    step5, redo = ("inner5", 800, 600), ("inner1", 160, 120)
    log = [step5, ("stop", 8, 3), step5, ("stop", 8, 3), *[redo] * 8, ("settle", 96, 96)]
    assert stepping_bytes(log) == 2 * (800 + 600)
    assert stepping_bytes([("inner1", 64, 48), ("stop", 8, 3)]) == 64 + 48  # one step per launch: no redo
