"""The one-command demo: argument handling and its error path (the full run is `make demo`)."""

from __future__ import annotations

import pytest

from cli import demo


def test_demo_refuses_a_file_as_output_folder(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SystemExit) as exc:
        demo.main([str(target)])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("demo: error:")


def test_demo_help_names_the_steps(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--help"])
    assert exc.value.code == 0 and "synthetic benchmark" in capsys.readouterr().out
