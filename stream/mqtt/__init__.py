"""``vadstream mqtt``: the detector's alerts, scores and snapshots on an MQTT broker, with
Home Assistant discovery and the detector's threshold and detection as commands."""
