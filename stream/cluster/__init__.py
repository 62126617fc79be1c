"""vadstream on a Ray cluster: Ray is the control plane, frames stay on their node.

- :mod:`.coordinator`: the named, detached actor that holds the camera -> shard map.
- :mod:`.shard`: one actor per node; runs ``vadstream detect`` and the captures of its
  cameras there, over local ZeroMQ, and forwards alerts, scores and status.
- :mod:`.sink`: the single writer of the cluster's events store; republishes on one
  ZeroMQ endpoint, so ``subscribe``, ``events`` and ``serve`` work against a cluster.
- :mod:`.config`: ``configs/cluster.yaml``; :mod:`.launch`: start or join Ray;
  :mod:`.drill`: the failover drill on a local multi-node cluster.
"""
