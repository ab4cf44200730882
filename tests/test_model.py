"""SOFTNet structure, Keras-default init, min-max normalisation and .pt checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from spotnet import SOFTNet, SpotnetError, count_parameters, load_checkpoint, load_model, minmax_normalize, save_model


def test_parameter_count_matches_table3():
    # Counted by hand: convs 25*F + F for F = 3, 5, 8; fc1 784*400 + 400; fc2 400 + 1.
    assert count_parameters(SOFTNet()) == 78 + 130 + 208 + 784 * 400 + 400 + 401 == 314_817


@pytest.mark.parametrize("batch", [1, 5])
def test_forward_shape_device_dtype(device, batch):
    torch.manual_seed(0)
    x = torch.rand(batch, 3, 42, 42).to(device)
    model = SOFTNet().to(device)
    y = model(x)
    assert y.shape == (batch,) and y.device.type == device and y.dtype == torch.float32


def test_streams_see_only_their_channel():
    # With the strain-stream kernel zeroed, channel 2 can only reach the output through that
    # stream, so changing it must leave the output bit-identical.
    torch.manual_seed(0)
    model = SOFTNet().eval()
    with torch.no_grad():
        model.conv_e.weight.zero_()
        x = torch.rand(2, 3, 42, 42)
        x2 = x.clone()
        x2[:, 2] = torch.rand(2, 42, 42)
        assert torch.equal(model(x), model(x2))


def test_reset_parameters_is_keras_default():
    torch.manual_seed(0)
    model = SOFTNet()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    model.reset_parameters()
    for layer, fan_in, fan_out in [
        (model.conv_u, 25, 75), (model.conv_v, 25, 125), (model.conv_e, 25, 200),
        (model.fc1, 784, 400), (model.fc2, 400, 1),
    ]:
        # Glorot-uniform bound sqrt(6 / (fan_in + fan_out)); Keras counts the 5x5 field in both fans.
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.5 * bound  # actually spread over the range, not tiny
        assert torch.count_nonzero(layer.bias) == 0


def test_reset_parameters_is_seeded():
    torch.manual_seed(3)
    a = SOFTNet().state_dict()
    torch.manual_seed(3)
    b = SOFTNet().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("shape", [(3, 42, 42), (2, 1, 42, 42), (2, 3, 40, 40)])
def test_forward_rejects_bad_shape(shape):
    with pytest.raises(SpotnetError, match="should have shape"):
        SOFTNet()(torch.zeros(shape))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_minmax_normalize(device, dtype):
    torch.manual_seed(0)
    x = (torch.randn(4, 3, 42, 42, dtype=dtype) * 5 + 2).to(device)
    x[1, 2] = 3.5  # a constant channel
    y = minmax_normalize(x)
    assert y.device == x.device and y.dtype == dtype and y.shape == x.shape
    assert torch.isfinite(y).all()
    mins, maxs = y.amin(dim=(2, 3)), y.amax(dim=(2, 3))
    expected_max = torch.ones_like(maxs)
    expected_max[1, 2] = 0
    # Exact: (x - min) / (max - min) gives exactly 0 at the argmin and exactly 1 at the argmax.
    assert torch.equal(mins, torch.zeros_like(mins)) and torch.equal(maxs, expected_max)
    assert torch.equal(y[1, 2], torch.zeros(42, 42, dtype=dtype, device=device))


def test_minmax_normalize_hand_values():
    x = torch.tensor([[[[2.0, 4.0], [6.0, 10.0]]]])
    assert minmax_normalize(x).tolist() == [[[[0.0, 0.25], [0.5, 1.0]]]]


@pytest.mark.parametrize("bad", [torch.zeros(3, 42, 42), torch.zeros(1, 3, 4, 4, dtype=torch.int64), [[1.0]]])
def test_minmax_normalize_rejects(bad):
    with pytest.raises(SpotnetError, match="should"):
        minmax_normalize(bad)


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = SOFTNet()
    meta = {"recipe": "loso", "k": 18, "fold": "s15", "metrics": {"f1": 0.25}, "source": "test"}
    path = tmp_path / "m.pt"
    save_model(model, path, metadata=meta)
    raw = torch.load(path, weights_only=True)  # must not need pickle
    assert raw["format_version"] == 3 and raw["architecture"] == "softnet"
    loaded, got = load_checkpoint(path)
    assert not loaded.training
    assert got == {**meta, "n_params": 314_817, "format_version": 3}
    x = torch.rand(3, 3, 42, 42)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert isinstance(load_model(path), SOFTNet)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def test_checkpoint_bad_metadata_writes_nothing(tmp_path):
    with pytest.raises(SpotnetError, match="JSON"):
        save_model(SOFTNet(), tmp_path / "m.pt", metadata={"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_missing_folder(tmp_path):
    with pytest.raises(SpotnetError, match="folder"):
        save_model(SOFTNet(), tmp_path / "nope" / "m.pt")


def test_load_rejects_missing_corrupt_and_foreign(tmp_path):
    with pytest.raises(SpotnetError, match="no such file"):
        load_model(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(SpotnetError, match="unreadable"):
        load_model(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(SpotnetError, match="another kind"):
        load_model(foreign)
    plain_state = tmp_path / "state.pt"
    torch.save(SOFTNet().state_dict(), plain_state)
    with pytest.raises(SpotnetError, match="another kind"):
        load_model(plain_state)
