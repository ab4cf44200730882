"""The spotnet CLI: results on stdout, bad input as one stderr line with exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from cli.spotnet_app import main
from spotnet import load_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
GT = "video,onset,offset,type\nv,1,10,macro\nv,21,30,macro\nw,5,7,micro\n"
PRED = "video,onset,offset,type,score\nv,1,10,macro,0.9\nv,51,60,macro,0.8\nv,21,30,macro,0.7\n"


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.fixture
def csvs(tmp_path):
    (tmp_path / "gt.csv").write_text(GT)
    (tmp_path / "pred.csv").write_text(PRED)
    return tmp_path / "pred.csv", tmp_path / "gt.csv"


def test_evaluate_table(csvs, capsys):
    code, out, err = run(["evaluate", str(csvs[0]), str(csvs[1])], capsys)
    assert code == 0 and err == ""
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    # Macro: 2 TP, 1 FP, 0 FN; AP 5/6 (see test_evaluation.test_ap_hand_computed).
    assert rows["Macro"] == ["2", "1", "0", "0.6667", "1.0000", "0.8000", "0.8333"]
    assert rows["Micro"][:3] == ["0", "0", "1"]
    assert rows["Overall"][:3] == ["2", "1", "1"]


def test_evaluate_json(csvs, capsys):
    code, out, _ = run(["evaluate", str(csvs[0]), str(csvs[1]), "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["macro"]["tp"] == 2 and d["overall"]["fn"] == 1


def test_import_keras(shared_dir, tmp_path, capsys):
    src = shared_dir / "weights" / "softnet-keras" / "casme2_macro_s1.hdf5"
    if not src.is_file():
        pytest.skip("released Keras weights are absent")
    code, _, err = run(["import-keras", str(src), str(tmp_path / "m.pt")], capsys)
    assert code == 0 and err == ""
    _, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["source"] == "keras:casme2_macro_s1.hdf5" and meta["n_params"] == 314_817
    assert (meta["dataset"], meta["type"], meta["fold"], meta["k"]) == ("casme2", "macro", "s1", 18)


def _bad_hdf5(path):
    with h5py.File(path, "w") as f:
        f.create_group("conv2d")
    return path


@pytest.mark.parametrize(
    ("make_args", "match"),
    [
        (lambda d: ["import-keras", str(_bad_hdf5(d / "bad.hdf5")), str(d / "out.pt")], "layer 'conv2d'"),
        (lambda d: ["import-keras", str(d / "absent.hdf5"), str(d / "out.pt")], "no such file"),
        (lambda d: ["evaluate", str(d / "absent.csv"), str(d / "gt.csv")], "no such file"),
        (lambda d: ["evaluate", str(d / "nocol.csv"), str(d / "gt.csv")], "missing type"),
        (lambda d: ["evaluate", str(d / "reversed.csv"), str(d / "gt.csv")], "onset <= offset"),
        (lambda d: ["evaluate", str(d / "meso.csv"), str(d / "gt.csv")], "'macro' or 'micro'"),
        (lambda d: ["evaluate", str(d / "nan.csv"), str(d / "gt.csv")], "finite"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, make_args, match):
    (tmp_path / "gt.csv").write_text(GT)
    (tmp_path / "nocol.csv").write_text("video,onset,offset\nv,1,2\n")
    (tmp_path / "reversed.csv").write_text("video,onset,offset,type\nv,9,2,macro\n")
    (tmp_path / "meso.csv").write_text("video,onset,offset,type\nv,1,2,meso\n")
    (tmp_path / "nan.csv").write_text("video,onset,offset,type,score\nv,1,2,micro,nan\n")
    args = make_args(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(args, capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("spotnet: error: ")
    assert re.search(match, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no OUT.pt, no temp file


def test_console_entry_in_a_subprocess(tmp_path):
    # The real entry point: exit code and stderr as a user sees them, no traceback.
    bad = _bad_hdf5(tmp_path / "bad.hdf5")
    proc = subprocess.run(
        [sys.executable, "-m", "cli.spotnet_app", "import-keras", str(bad), str(tmp_path / "out.pt")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.pt").exists()
