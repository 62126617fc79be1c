"""``vadstream bench``'s measurements, as a library below the commands: the network alone
(:mod:`~stream.bench.network`, :mod:`~stream.bench.peak`, :mod:`~stream.bench.reduced`),
the whole multi-process pipeline (:mod:`~stream.bench.pipeline`: ``vadstream capture``
and ``vadstream detect`` started as subprocesses by :mod:`stream.processes`, so nothing
here imports the command layer), the capacity search (:mod:`~stream.bench.capacity`), the
motion gate's share (:mod:`~stream.bench.gated`) and the report of them all
(:func:`stream.bench.report.run_bench`, :func:`stream.bench.report.format_bench`). The
``bench`` command parses flags, calls ``run_bench`` and prints ``format_bench``.

Nothing is imported here: the command's parser reads :mod:`stream.bench.capacity`'s
defaults without loading MXNet.
"""
