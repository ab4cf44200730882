"""flowkit.features.strain (SPEC 3): smoke, exceptions, cardinality, feature, gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowkit.errors import FlowkitError
from flowkit.features.strain import OpticalStrain, optical_strain


def _strain_loops(u, v):
    """SPEC 3 written out pixel by pixel."""
    h, w = u.shape
    e = np.zeros((h, w), np.float64)
    for y in range(h - 1):
        for x in range(w - 1):
            u_x = u[y, x] - u[y, x + 1]
            v_y = v[y, x] - v[y + 1, x]
            u_y = u[y, x] - u[y + 1, x]
            v_x = v[y, x] - v[y, x + 1]
            e[y, x] = np.sqrt(u_x**2 + v_y**2 + 0.5 * (u_y + v_x) ** 2)
    e[:, w - 1] = e[:, w - 2]
    e[h - 1, :] = e[h - 2, :]
    return e


def test_smoke_shape_device_dtype(device):
    flow = torch.randn(3, 2, 16, 12, dtype=torch.float64).to(device)
    e = optical_strain(flow)
    assert e.shape == (3, 16, 12) and e.device == flow.device and e.dtype == torch.float64
    assert OpticalStrain()(flow.float()).dtype == torch.float32


@pytest.mark.parametrize("a,b,c,d", [(1.0, 0.0, 0.0, 0.0), (0.5, -2.0, 1.0, 0.25), (0.0, 1.0, 1.0, 0.0)])
def test_linear_flow_known_strain(device, a, b, c, d):
    # u = a x + b y, v = c x + d y: u_x = -a, u_y = -b, v_x = -c, v_y = -d (forward, SPEC sign)
    y, x = torch.meshgrid(torch.arange(10.0), torch.arange(14.0), indexing="ij")
    flow = torch.stack([a * x + b * y, c * x + d * y])[None].to(device)
    expected = np.sqrt(a**2 + d**2 + 0.5 * (b + c) ** 2)
    torch.testing.assert_close(optical_strain(flow).cpu(), torch.full((1, 10, 14), expected), atol=1e-5, rtol=0)


def test_shear_versus_rotation():
    # pure rotation (u = -y, v = x) has u_y + v_x = 0 and no strain; pure shear does.
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    assert optical_strain(torch.stack([-y, x])[None]).abs().max() < 1e-6
    assert torch.allclose(optical_strain(torch.stack([y, x])[None]), torch.tensor(2.0).sqrt())


def test_matches_loops_and_border_copy():
    rng = np.random.default_rng(0)
    flow = rng.standard_normal((2, 2, 9, 7))
    e = optical_strain(torch.from_numpy(flow)).numpy()
    for b in range(2):
        np.testing.assert_allclose(e[b], _strain_loops(flow[b, 0], flow[b, 1]), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(e[:, :, -1], e[:, :, -2])
    np.testing.assert_array_equal(e[:, -1, :], e[:, -2, :])
    np.testing.assert_array_equal(e[:, -1, -1], e[:, -2, -2])


def test_last_row_and_column_of_flow_are_ignored():
    # The strain copies values, it does not difference the last row/column: changing them
    # changes only what row/col H-2 / W-2 sees through their forward neighbours.
    flow = torch.zeros(1, 2, 6, 6)
    flow[0, 0, :, 5] = 100.0  # u jumps in the last column
    e = optical_strain(flow)
    assert torch.all(e[0, :, :4] == 0)
    assert torch.all(e[0, :, 4] == 100.0) and torch.all(e[0, :, 5] == 100.0)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 16, 16), r"\(B, 2, H, W\)"),
    (torch.zeros(1, 3, 16, 16), r"\(B, 2, H, W\)"),
    (torch.zeros(1, 2, 1, 16), "H, W >= 2"),
    (torch.zeros(1, 2, 4, 4, dtype=torch.int32), "floating"),
    (np.zeros((1, 2, 4, 4)), "torch.Tensor"),
])
def test_exceptions(bad, match):
    with pytest.raises(FlowkitError, match=match):
        optical_strain(bad)


def test_gradcheck():
    flow = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(optical_strain, (flow,))
