"""The model registry: every backbone maps (B, 3, 42, 42) to (B,), has the parameter count its
spec states, round-trips through a weights_only checkpoint, and trains and spots like SOFTNet."""

from __future__ import annotations

import pytest
import torch
from test_dataset import make_store

from spotnet import load_checkpoint, save_model
from spotnet.errors import SpotnetError
from spotnet.models import build_model, get_spec, list_models


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):  # absent, or built for another torch
        return False
    return True


NEEDS_TORCHVISION = pytest.mark.skipif(not _torchvision_imports(),
                                       reason="torchvision does not import beside this torch build")
MODELS = [pytest.param(name, marks=[] if name == "softnet" else [NEEDS_TORCHVISION]) for name in
          ["softnet", "mobilenet_v2", "resnet18", "resnet50", "vgg16"]]


def test_registry_lists_the_table3_backbones():
    assert list_models() == ["mobilenet_v2", "resnet18", "resnet50", "softnet", "vgg16"]
    assert get_spec("softnet").n_params == 314_817 and get_spec("softnet").cpu_threads == 1
    with pytest.raises(SpotnetError, match="backbone should be one of"):
        get_spec("alexnet")


@pytest.mark.parametrize("name", MODELS)
def test_shape_parameters_and_checkpoint(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.rand(2, 3, 42, 42)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2,) and torch.isfinite(y).all()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == get_spec(name).n_params
    path = tmp_path / f"{name}.pt"
    save_model(model, path, metadata={"k": 6, "type": "micro"})
    assert torch.load(path, weights_only=True)["architecture"] == name
    loaded, meta = load_checkpoint(path)
    assert meta["k"] == 6 and loaded.backbone == name
    with torch.no_grad():
        assert torch.equal(loaded(x), y)


def test_vgg16_matches_table3_exactly():
    """VGG-16 without its top plus one output is 14,715,201 parameters in Keras and here."""
    assert get_spec("vgg16").n_params == 14_715_201 and round(14_715_201 / 1e6, 4) == get_spec("vgg16").table3_params_m


@NEEDS_TORCHVISION
def test_cli_trains_a_resnet18_that_spot_loads(tmp_path):
    from cli.spotnet_app import main

    store = make_store(tmp_path / "s.zarr", n_frames=80, events=(("macro", 20, 35),))
    with pytest.raises(SystemExit) as done:
        main(["train", str(store), "--expression", "macro", "--backbone", "resnet18", "--epochs", "1", "--out",
              str(tmp_path / "run"), "--no-progress"])
    assert done.value.code in (0, None)
    _, meta = load_checkpoint(tmp_path / "run" / "folds" / "macro" / "a.pt")
    assert meta["recipe"]["backbone"] == "resnet18"
    with pytest.raises(SystemExit) as done:
        main(["spot", str(tmp_path / "run"), str(store), "--out", str(tmp_path / "i.csv")])
    assert done.value.code in (0, None)
    assert (tmp_path / "i.csv").read_text().startswith("video,onset,offset,type")
