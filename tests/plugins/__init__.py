"""Plug-in model families registered by the tests (detector.plugins)."""
