"""Frame sources, frame readers and the capture process."""
