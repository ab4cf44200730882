"""SOFTNet (the default): the paper's shallow three-stream CNN, :class:`spotnet.model.SOFTNet`."""

from __future__ import annotations

from spotnet.model import N_PARAMS, SOFTNet
from spotnet.models import register_model

__all__ = ["softnet"]


@register_model("softnet", n_params=N_PARAMS, table3_params_m=0.3148, cpu_threads=1,
                citation="Liong, See, Wong, Shallow optical flow three-stream CNN for macro- and micro-expression "
                         "spotting from long videos, ICIP 2021")
def softnet() -> SOFTNet:
    return SOFTNet()
