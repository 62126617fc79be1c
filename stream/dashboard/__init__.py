"""``vadstream serve``: the operator's web dashboard, metrics and snapshots."""
