"""The live detector: admission, rings, scheduling, engine, stages, events.

Import from the submodules; this package imports nothing, so a reader of the events
store or the wire never loads MXNet.
"""
