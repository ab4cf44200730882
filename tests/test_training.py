"""LOSO training, resume, determinism, random control, spotting with trained models and bad input.

Stores are tiny hand-built Zarr stores (tests/test_dataset.make_store) so the file runs in
seconds; 2 epochs are enough for the learnable bump the stores carry.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from test_dataset import make_store

from spotnet.checkpoint import load_checkpoint
from spotnet.errors import SpotnetError
from spotnet.spot import load_spotting_models, spot, spot_store
from spotnet.training import train_loso

EVENTS = (("macro", 30, 50), ("micro", 100, 104), ("macro", 140, 160))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("st") / "s.zarr", n_frames=200, events=EVENTS)


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = train_loso(store, out_dir=out, epochs=2, progress=False)
    return out, result


def test_outputs(run):
    out, result = run
    for kind in ("macro", "micro"):
        for s in "abc":
            model, meta = load_checkpoint(out / "folds" / kind / f"{s}.pt")
            assert meta["fold"] == s and meta["expression"] == kind and meta["k"] == (8 if kind == "macro" else 3)
            assert set(meta["metrics"]) >= {"tp", "fp", "fn", "f1"} and meta["recipe"]["batch_size"] == 12
        assert np.load(out / "scores" / kind / "a_v0.npy").shape == (200 - (8 if kind == "macro" else 3),)
        assert (out / "plots" / kind / "a_v0.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"macro", "micro", "overall"}
    assert set(metrics["overall"]) == {"tp", "fp", "fn", "precision", "recall", "f1", "ap50_95"}
    assert "report.html" in [p.name for p in out.iterdir()]
    assert "plots/macro/a_v0.png" in (out / "report.html").read_text()
    header = (out / "intervals.csv").read_text().splitlines()[0]
    assert header == "video,onset,offset,type,score"
    assert result.macro.recall == 1.0 and result.macro.f1 >= 0.6  # the macro bump is easy to learn


def test_same_seed_same_metrics(store, run, tmp_path):
    out, _ = run
    again = train_loso(store, out_dir=tmp_path, epochs=2, progress=False, report=False)
    assert json.loads((out / "metrics.json").read_text())["overall"] == again.to_dict()["overall"]
    np.testing.assert_array_equal(np.load(out / "scores/micro/b_v0.npy"), np.load(tmp_path / "scores/micro/b_v0.npy"))


def test_resume_skips_complete_folds(store, run, tmp_path):
    out, _ = run
    # Copy fold a and b of macro; a rerun trains only c and still gives the same metrics.
    import shutil

    shutil.copytree(out / "folds", tmp_path / "folds")
    shutil.copytree(out / "scores", tmp_path / "scores")
    (tmp_path / "folds/macro/c.pt").unlink()
    before = (tmp_path / "folds/macro/a.pt").stat().st_mtime_ns
    result = train_loso(store, out_dir=tmp_path, epochs=2, progress=False, report=False)
    assert (tmp_path / "folds/macro/a.pt").stat().st_mtime_ns == before
    assert (tmp_path / "folds/macro/c.pt").is_file()
    assert result.to_dict()["overall"] == json.loads((out / "metrics.json").read_text())["overall"]


def test_random_control_is_poor(store, tmp_path):
    result = train_loso(store, out_dir=tmp_path, expression="macro", progress=False, control="random", report=False)
    assert result.macro.f1 < 0.5


def test_spot_with_run_dir_and_single_checkpoint(store, run):
    out, _ = run
    models = load_spotting_models(out)
    assert set(models) == {"macro", "micro"} and len(models["macro"][1]) == 3
    pred = spot(out, store)
    assert {p.type for p in pred} <= {"macro", "micro"} and pred
    single = spot(out / "folds/macro/a.pt", store)
    assert {p.type for p in single} == {"macro"}
    folder = load_spotting_models(out / "folds/macro")  # a folder of checkpoints is an ensemble too
    assert set(folder) == {"macro"} and len(folder["macro"][1]) == 3
    with pytest.raises(SpotnetError, match="should hold"):
        load_spotting_models(out / "plots")


def test_spot_works_without_annotations(run, tmp_path):
    out, _ = run
    bare = make_store(tmp_path / "bare.zarr", n_frames=200, events=EVENTS, annotate=False)
    assert spot_store(load_spotting_models(out / "folds/macro/b.pt"), bare)


@pytest.mark.parametrize("case, match", [
    ("no_annotations", "annotations"),
    ("one_subject", "two subjects"),
    ("no_micro", "micro intervals"),
    ("incomplete", "interrupted"),
])
def test_train_bad_stores(tmp_path, case, match):
    kwargs = {"no_annotations": dict(annotate=False), "one_subject": dict(subjects=("a",), videos_per_subject=2),
              "no_micro": dict(events=(("macro", 30, 50),)), "incomplete": dict(complete=False)}[case]
    path = make_store(tmp_path / "s.zarr", n_frames=100, **kwargs)
    with pytest.raises(SpotnetError, match=match):
        train_loso(path, out_dir=tmp_path / "o", expression="micro" if case == "no_micro" else "macro",
                   epochs=1, progress=False)


def test_spot_k_mismatch(run, tmp_path):
    out, _ = run
    other = make_store(tmp_path / "k.zarr", n_frames=100, ks={"macro": 9, "micro": 4})
    with pytest.raises(SpotnetError, match="k \\(8\\) should be one of the store's k values \\[4, 9\\]"):
        spot(out / "folds/macro/a.pt", other)


def test_corrupted_checkpoint(run, tmp_path):
    out, _ = run
    bad = tmp_path / "bad.pt"
    bad.write_bytes((out / "folds/macro/a.pt").read_bytes()[:300])
    with pytest.raises(SpotnetError, match="unreadable"):
        load_spotting_models(bad)


def test_incomplete_fold_is_retrained(store, run, tmp_path):
    """A truncated checkpoint (killed while writing without rename) does not count as complete."""
    out, _ = run
    import shutil

    shutil.copytree(out / "scores", tmp_path / "scores")
    (tmp_path / "folds/macro").mkdir(parents=True)
    (tmp_path / "folds/macro/a.pt").write_bytes(b"garbage")
    train_loso(store, out_dir=tmp_path, expression="macro", epochs=2, progress=False, report=False)
    load_checkpoint(tmp_path / "folds/macro/a.pt")


def test_bad_arguments(store, tmp_path):
    with pytest.raises(SpotnetError, match="expression"):
        train_loso(store, out_dir=tmp_path, expression="nano")
    with pytest.raises(SpotnetError, match="subjects should be among"):
        train_loso(store, out_dir=tmp_path, expression="macro", subjects=["zz"], progress=False)
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(SpotnetError, match="flowkit store of schema version 1"):
        train_loso(tmp_path / "empty.zarr", out_dir=tmp_path / "o")


def test_cli_train_and_spot(store, run, tmp_path, capsys):
    from cli.spotnet_app import main

    out, _ = run
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # typer exits 0 on success
        main(["spot", str(out), str(store), "--out", str(tmp_path / "iv.csv")])
    assert exc.value.code == 0
    assert (tmp_path / "iv.csv").read_text().startswith("video,onset,offset,type,score")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exc:
        main(["spot", str(bad), str(store)])
    assert exc.value.code == 2 and "checkpoint" in capsys.readouterr().err


def test_cli_spot_on_a_video_keeps_its_store(run, data_dir, mediapipe_model, tmp_path, monkeypatch, capsys):
    """`spotnet spot RUN clip/ --store S --flow-backend torch --landmark-model M`: the clip is
    extracted at the models' k values (8 macro, 3 micro) with the chosen backend (SPEC-default
    TV-L1: these models recorded no flow settings) and the store is kept. The landmark model
    comes from the option alone (the environment variable is unset)."""
    from video_clips import write_frames

    from cli.spotnet_app import main
    from flowkit.io.store import FeatureStore

    out, _ = run
    monkeypatch.delenv("FLOWKIT_MEDIAPIPE_MODEL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # no cached model either
    clip = write_frames(data_dir / "single_face.mp4", tmp_path / "clip", 24)
    kept = tmp_path / "kept.zarr"
    with pytest.raises(SystemExit) as exc:
        main(["spot", str(out), str(clip), "--out", str(tmp_path / "iv.csv"), "--store", str(kept),
              "--flow-backend", "torch", "--landmark-model", str(mediapipe_model)])
    assert exc.value.code == 0, capsys.readouterr().err
    store = FeatureStore(kept)
    assert store.videos() == ["clip"] and store.ks("clip") == [3, 8]
    assert store.k_attrs("clip", 3)["flow_backend"].startswith("torch")
    assert (tmp_path / "iv.csv").read_text().startswith("video,onset,offset,type,score")
