"""What an install puts in site-packages: flowkit, spotnet and the CLI as softnet_cli, never a
top-level `cli` (other projects install one too); `python -m flowkit` and `python -m spotnet` work."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_installed_and_cli_only_as_softnet_cli():
    tool = CONFIG["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for top in ("flowkit", "spotnet")
               for p in (ROOT / top).rglob("__init__.py")}
    assert set(tool["packages"]) == folders | {"softnet_cli"}
    assert tool["package-dir"] == {"softnet_cli": "cli"}
    assert all(not p.startswith("cli") for p in tool["packages"])
    assert {s.split(":")[0] for s in CONFIG["project"]["scripts"].values()} == {
        "softnet_cli.flowkit_app", "softnet_cli.spotnet_app"}


@pytest.mark.parametrize("package", ["flowkit", "spotnet"])
def test_python_m_runs_the_command_line(package, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", package, "--help"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Usage: {package}" in done.stdout
