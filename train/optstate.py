"""Saving and restoring the optimizer's moments without pickle (``Trainer.save_states``
pickles, which this project never does).

With ``kvstore=None`` (one device), Gluon keeps the per-parameter states in
``trainer._updaters[0].states`` (Adam: a ``(mean, var)`` pair of NDArrays per parameter
index) and the step counts on the optimizer; both are written with MXNet's own NDArray
format plus JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
from mxnet import gluon


def save_optimizer(trainer: gluon.Trainer, path: Path) -> None:
    """Write ``path`` (NDArrays) and ``path.json`` (step counts)."""
    updater = trainer._updaters[0]
    arrays = {}
    for index, state in updater.states.items():
        parts = state if isinstance(state, (tuple, list)) else (state,)
        for j, part in enumerate(parts):
            if part is not None:
                arrays[f"{index}:{j}"] = part
    mx.nd.save(str(path), arrays)
    opt = trainer._optimizer
    Path(f"{path}.json").write_text(json.dumps({
        "num_update": opt.num_update,
        "index_update_count": {str(k): v for k, v in opt._index_update_count.items()}}))


def load_optimizer(trainer: gluon.Trainer, path: Path, ctx: mx.Context) -> bool:
    """Restore what :func:`save_optimizer` wrote; False if there is nothing to restore."""
    meta_path = Path(f"{path}.json")
    if not path.is_file() or not meta_path.is_file():
        return False
    if trainer._kvstore_params["kvstore"] is not None:
        raise ValueError("optimizer state can only be restored into a Trainer made with "
                         "kvstore=None")
    arrays = mx.nd.load(str(path))
    grouped: dict[int, dict[int, mx.nd.NDArray]] = {}
    for key, value in arrays.items():
        index, j = (int(p) for p in key.split(":"))
        grouped.setdefault(index, {})[j] = value.as_in_context(ctx)
    updater = trainer._updaters[0]
    for index, parts in grouped.items():
        state = tuple(parts[j] for j in sorted(parts))
        updater.states[index] = state if len(state) > 1 else state[0]
        updater.states_synced[index] = True
    meta = json.loads(meta_path.read_text())
    opt = trainer._optimizer
    opt.num_update = meta["num_update"]
    counts = {int(k): v for k, v in meta["index_update_count"].items()}
    # Counts live per device (one device here); Adam's bias correction reads them.
    opt._all_index_update_counts = {0: counts}
    opt._index_update_count = counts
    return True
