"""flowkit.io.atomic.atomic_write: all or nothing, normal permissions, no debris."""

from __future__ import annotations

import os

import pytest

from flowkit.io.atomic import atomic_write


def test_replaces_the_file_with_umask_permissions(tmp_path):
    target = tmp_path / "scores.npy"
    target.write_bytes(b"old")
    old_mask = os.umask(0o022)
    try:
        with atomic_write(target) as f:
            f.write(b"new")
    finally:
        os.umask(old_mask)
    assert target.read_bytes() == b"new"
    # 0666 minus the umask, as open() gives, not mkstemp's 0600.
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["scores.npy"]


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "intervals.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, "w", encoding="utf-8") as f:
            f.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["intervals.csv"]
