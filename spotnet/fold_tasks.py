"""Groups of LOSO folds as Dask tasks, on flowkit's Dask engine (``--scheduler local:N`` / ``tcp://...``).

Each task trains one group of folds (:func:`spotnet.fold_parallel.train_folds`) in a worker and
saves each fold, scores first and checkpoint last, into the run folder, which the workers must
see (as they must see the store). Nothing but the group's subjects travels back. The cluster is
:class:`flowkit.pipeline.engines.DaskEngine`'s: the same ``local:N`` embedded cluster or connection to a
running scheduler, the same worker resource ``GPU=1`` for work on CUDA.

A worker killed mid-group loses only that task; Dask runs it again on another worker, where it
skips the group's folds already saved and trains the others from their start, to the same
checkpoints (each fold's training depends on nothing but its recipe and the store). The driver
then reads every fold's scores from the run folder, as a resumed run does.
"""

from __future__ import annotations

import uuid

from flowkit.errors import FlowkitError
from spotnet.determinism import deterministic
from spotnet.errors import SpotnetError

__all__ = ["run_groups", "train_group"]


def train_group(run, plan, group: list, train) -> list[str]:
    """Task body: ``train(run, plan, group)`` (the trainer's group step, which saves each fold) in
    this worker; the subjects of the group."""
    with deterministic(run.threads):
        train(run, plan, group)
    return [fold[0] for fold in group]


def run_groups(run, plan, groups: list[list], *, train) -> None:
    """Run every group as one task on ``run.scheduler`` and wait for all of them; ``train`` is the
    trainer's group step, a module-level function that Dask pickles by name."""
    from flowkit.pipeline.engines import DaskEngine

    try:
        engine = DaskEngine(None, run.scheduler)  # settings are used only by DaskEngine.run, for flowkit units
    except FlowkitError as exc:
        raise SpotnetError(str(exc)) from None
    from distributed import as_completed

    resources = {"GPU": 1} if run.device.type == "cuda" else None
    tag = uuid.uuid4().hex[:8]
    futures = [engine.client.submit(train_group, run, plan, group, train, pure=False, resources=resources,
                                    key=f"spotnet-folds-{plan.expression}-{tag}-{n}")
               for n, group in enumerate(groups)]
    try:
        for future in as_completed(futures):
            future.result()
    finally:
        engine.client.cancel(futures)
        engine.close()
