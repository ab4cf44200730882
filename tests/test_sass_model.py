"""The Triton implementations' inner kernels, compiled for the H100/H200 (sm_90) on the CPU.

tools/kernels/sass_model.py compiles them ahead of time with the ptxas that Triton's wheel brings
and reads the machine code; it runs in a process of its own, away from the interpreter that
test_flow_triton.py sets up.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

if importlib.util.find_spec("triton") is None:
    pytest.skip("the gpu extra (triton) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def defaults() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "kernels" / "sass_model.py"), "--defaults-only"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    if done.returncode != 0 and "cuobjdump" in done.stderr and "No such file" in done.stderr:
        pytest.skip("this triton wheel brings no cuobjdump")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    return {**report["defaults"], "triton-tiles on images wider than 128": report["wide_images"]}


def test_default_kernels_do_not_spill_registers(defaults):
    # A spill puts per-pixel values in local memory, which is DRAM: it undoes what fusing saves.
    assert set(defaults) == {"triton", "triton-tiles", "triton-strips", "triton-tiles on images wider than 128"}
    for impl, row in defaults.items():
        assert row["stack_bytes"] == 0 and row["spill_loads"] == 0 and row["spill_stores"] == 0, (impl, row)


def test_tiles_move_fewer_bytes_for_no_more_instructions(defaults):
    # What "triton-tiles" is for: per pixel and inner iteration, less memory traffic than
    # "triton" (several steps per launch) without the recomputation that would cost more issue
    # slots (two steps on blocks: 21 warp instructions per pixel-iteration against 9,
    # sass_model_sm90.json).
    blocks, tiles = defaults["triton"], defaults["triton-tiles"]
    assert tiles["bytes_per_px_iteration"] < 0.7 * blocks["bytes_per_px_iteration"]
    assert tiles["warp_instructions_per_px_iteration"] <= blocks["warp_instructions_per_px_iteration"]


def test_strips_shift_with_shuffles_and_save_bytes_and_instructions(defaults):
    # What "triton-strips" is for: several steps per launch like the tiles, but its shifts are
    # along a row inside one warp, so they compile to warp shuffles with no barrier (the tiles
    # shift across warps through shared memory, with barriers that stall the SM; measured slower
    # on an H200), and it issues fewer instructions per pixel-iteration than "triton".
    blocks, strips = defaults["triton"], defaults["triton-strips"]
    assert strips["barriers"] == 0 and strips["shuffles"] > 0, strips
    assert strips["bytes_per_px_iteration"] < 0.5 * blocks["bytes_per_px_iteration"]
    assert strips["warp_instructions_per_px_iteration"] < blocks["warp_instructions_per_px_iteration"]
