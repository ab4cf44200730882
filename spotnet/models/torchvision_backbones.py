"""The Table 3 comparison backbones, from torchvision's architectures (no pretrained weights).

Each keeps torchvision's convolutional trunk, unchanged, on (B, 3, 42, 42) windows, and replaces
the ImageNet classifier by global average pooling and ``Linear(C, 1)``: the head with the fewest
parameters, which brings the counts closest to the paper's Table 3 (the paper's Keras models,
``include_top=False`` plus ``Dense(1)``; docs/models.md compares the counts). The trunks
downsample by 32, so 42x42 windows reach the pooling as 2x2 maps (VGG-16: 1x1).
"""

from __future__ import annotations

import torch
from torch import nn

from spotnet.models import register_model

__all__ = ["PooledRegressor", "mobilenet_v2", "resnet18", "resnet50", "vgg16"]


class PooledRegressor(nn.Module):
    """A convolutional trunk, global average pooling and one linear output.

    Shapes: (B, 3, 42, 42) -> trunk (B, C, h, w) -> (B, C) -> (B,).
    """

    def __init__(self, trunk: nn.Module, channels: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x).mean(dim=(2, 3))).squeeze(1)


def _resnet_trunk(model) -> nn.Module:
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                         model.layer1, model.layer2, model.layer3, model.layer4)


@register_model("mobilenet_v2", n_params=2_225_153, table3_params_m=2.2631,
                citation="Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018 "
                         "(torchvision.models.mobilenet_v2)")
def mobilenet_v2() -> nn.Module:
    from torchvision.models import mobilenet_v2 as tv

    return PooledRegressor(tv(weights=None).features, 1280)


@register_model("resnet18", n_params=11_177_025, table3_params_m=11.2877,
                citation="He et al., Deep Residual Learning for Image Recognition, CVPR 2016 "
                         "(torchvision.models.resnet18)")
def resnet18() -> nn.Module:
    from torchvision.models import resnet18 as tv

    return PooledRegressor(_resnet_trunk(tv(weights=None)), 512)


@register_model("resnet50", n_params=23_510_081, table3_params_m=23.5960,
                citation="He et al., Deep Residual Learning for Image Recognition, CVPR 2016 "
                         "(torchvision.models.resnet50)")
def resnet50() -> nn.Module:
    from torchvision.models import resnet50 as tv

    return PooledRegressor(_resnet_trunk(tv(weights=None)), 2048)


@register_model("vgg16", n_params=14_715_201, table3_params_m=14.7152,
                citation="Simonyan, Zisserman, Very Deep Convolutional Networks for Large-Scale Image "
                         "Recognition, ICLR 2015 (torchvision.models.vgg16)")
def vgg16() -> nn.Module:
    from torchvision.models import vgg16 as tv

    return PooledRegressor(tv(weights=None).features, 512)
