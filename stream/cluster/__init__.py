"""vadstream on a Ray cluster: Ray is the control plane, frames stay on their node.

- :mod:`.coordinator`: the named, detached actor that holds the camera -> shard map.
- :mod:`.shard`: one actor per node; runs ``vadstream detect`` and the captures of its
  cameras there, over local ZeroMQ, and forwards alerts, scores and status.
- :mod:`.sink`: the single writer of the cluster's events store; republishes on one
  ZeroMQ endpoint, so ``subscribe``, ``events`` and ``serve`` work against a cluster.
- :mod:`.config`: ``configs/cluster.yaml``; :mod:`.launch`: start or join Ray;
  :mod:`.drill`: the failover drill on a local multi-node cluster.
"""

from __future__ import annotations

import importlib.util

#: What a command that needs Ray says when it is not installed.
NO_RAY = ("this needs Ray, which is not installed: install the `cluster` extra with "
          "`pip install -e \".[cluster]\"` (it pins ray[default]==2.40.0)")


def require_ray() -> None:
    """Check that Ray can be imported, before anything imports it.

    Raises:
        RuntimeError: Naming the ``cluster`` extra, when Ray is missing or does not import.
    """
    try:
        if importlib.util.find_spec("ray") is None:
            raise RuntimeError(NO_RAY)
        import ray  # noqa: F401 - imported to see that it works, not only that it is there
    except ImportError as err:
        raise RuntimeError(f"{NO_RAY} ({err})") from None
