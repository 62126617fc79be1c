"""The commands: cli, run (supervisor), demo, bench; the only importers of train/."""
