"""TV-L1 parameters (SPEC section 2): OpenCV's DualTVL1 defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["TVL1Params", "check_params"]


@dataclass(frozen=True)
class TVL1Params:
    """Parameters of the Dual TV-L1 solver, named as in OpenCV's ``DualTVL1OpticalFlow``.

    ``lambda_`` carries a trailing underscore because ``lambda`` is a Python keyword.

    >>> TVL1Params().to_dict()["nscales"]
    5
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def to_dict(self) -> dict:
        """The parameters as keyword arguments for ``tvl1`` and the backends."""
        return asdict(self)


def check_params(params: dict) -> TVL1Params:
    """Build a ``TVL1Params`` from keyword arguments; unknown names raise ``FlowkitError``."""
    from flowkit.errors import FlowkitError

    known = set(TVL1Params.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise FlowkitError(
            f"TV-L1 parameters should be among {sorted(known)}, got unknown {unknown}"
        )
    return TVL1Params(**params)
