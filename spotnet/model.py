"""SOFTNet (SPEC section 5): the shallow three-stream CNN that scores one optical-flow window."""

from __future__ import annotations

import torch
from torch import nn

from spotnet.errors import SpotnetError

__all__ = ["INPUT_SIZE", "N_PARAMS", "SOFTNet", "count_parameters"]

#: Filters of the u, v and strain streams, in input-channel order.
STREAM_FILTERS: tuple[int, int, int] = (3, 5, 8)
#: Spatial size of one feature window (rows and columns).
INPUT_SIZE = 42
#: Parameter count of the published model (Table 3 rounds it to 0.3148 M).
N_PARAMS = 314_817


class SOFTNet(nn.Module):
    """Shallow optical flow three-stream CNN.

    Each input channel (u, v, strain) goes through its own 5x5 'same' convolution with 3, 5 and
    8 filters, ReLU and a 3x3/3 max pool (42 -> 14). The 16 maps are concatenated in the order
    u, v, e, pooled 2x2/2 (14 -> 7), flattened in PyTorch (C, H, W) order (784) and passed
    through Dense 400 + ReLU and Dense 1.

    The model does no input normalisation; apply :func:`spotnet.minmax_normalize` first.

    Shapes:
        input: (B, 3, 42, 42) float, channels (u, v, e).
        output: (B,) raw regression scores (no sigmoid; trained with MSE).

    >>> SOFTNet()(torch.zeros(2, 3, 42, 42)).shape
    torch.Size([2])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_u = nn.Conv2d(1, STREAM_FILTERS[0], 5, padding=2)
        self.conv_v = nn.Conv2d(1, STREAM_FILTERS[1], 5, padding=2)
        self.conv_e = nn.Conv2d(1, STREAM_FILTERS[2], 5, padding=2)
        self.pool_stream = nn.MaxPool2d(3, stride=3)
        self.pool_merged = nn.MaxPool2d(2, stride=2)
        n_flat = sum(STREAM_FILTERS) * (INPUT_SIZE // 3 // 2) ** 2
        self.fc1 = nn.Linear(n_flat, 400)
        self.fc2 = nn.Linear(400, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise like Keras defaults: Glorot-uniform kernels, zero biases.

        Training calls this once per LOSO fold (SPEC section 6). Seed ``torch`` beforehand for
        reproducible weights.
        """
        for layer in (self.conv_u, self.conv_v, self.conv_e, self.fc1, self.fc2):
            # Keras' fan_in/fan_out for conv kernels include the receptive field, as torch's do.
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise SpotnetError(
                f"SOFTNet input should have shape (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), "
                f"got {tuple(x.shape)}"
            )
        streams = [
            self.pool_stream(torch.relu(conv(x[:, i : i + 1])))
            for i, conv in enumerate((self.conv_u, self.conv_v, self.conv_e))
        ]
        merged = self.pool_merged(torch.cat(streams, dim=1))
        hidden = torch.relu(self.fc1(merged.flatten(1)))
        return self.fc2(hidden).squeeze(1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (314,817 for :class:`SOFTNet`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
