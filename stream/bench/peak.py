"""The machine's practical fp32 peak and the STAE's FLOP count, for the bench's
utilization figure."""

from __future__ import annotations

from collections.abc import Callable

import mxnet as mx
import numpy as np

from stream.bench.timing import best_times


def _onnx_matmul(n: int) -> Callable[[], object] | None:
    """An onnxruntime (MLAS) ``n × n`` fp32 matrix multiply, or None without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    spec = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                              spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {x: rng.random((n, n), np.float32) for x in "ab"}
    return lambda: session.run(None, feed)


def peak_report(ctx: mx.Context, sizes: tuple[int, ...] = (1024, 2048),
                seconds: float = 3.0) -> dict:
    """Practical fp32 peak: the fastest square matrix multiply (GFLOP/s) this machine's
    libraries run, at each size in ``sizes``. On a GPU: MXNet's ``dot``. On a CPU, also
    oneDNN's inner product (MXNet's ``FullyConnected``), NumPy's BLAS and onnxruntime's
    MLAS: the BLAS a library bundles may not use every instruction this CPU has (NumPy's
    and MXNet's ``dot`` reach half of oneDNN's on AVX-512 here), so the fastest is the
    honest ceiling for a utilization.

    Returns:
        ``{"gflops": best, "by": "library n", "all": {"library n": GFLOP/s}}``.
    """
    found = {}
    for n in sizes:
        a = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
        b = mx.nd.random.uniform(shape=(n, n), ctx=ctx)
        fns = {"mxnet dot": lambda a=a, b=b: mx.nd.dot(a, b).wait_to_read()}
        if ctx.device_type == "cpu":
            x, y = a.asnumpy(), b.asnumpy()
            fns["onednn inner product"] = lambda a=a, b=b, n=n: mx.nd.FullyConnected(
                a, b, no_bias=True, num_hidden=n).wait_to_read()
            fns["numpy"] = lambda x=x, y=y: x @ y
            mlas = _onnx_matmul(n)
            if mlas is not None:
                fns["onnxruntime mlas"] = mlas
        for name, t in best_times(fns, seconds * len(fns) / len(sizes) / 4).items():
            found[f"{name} {n}"] = round(2 * n ** 3 / t / 1e9, 1)
    by = max(found, key=found.get)
    return {"gflops": found[by], "by": by, "all": found}


def conv_macs(out_hw: int, out_c: int, k: int, in_c: int) -> int:
    return out_hw * out_hw * out_c * k * k * in_c


def gflop_per_frame(window: int, spatial: tuple[int, int], temporal: tuple[int, int, int],
                    output_channels: int = 1) -> float:
    """FLOPs (2 per multiply-add) of one 227×227 frame through the STAE, counted from its
    layers; ``output_channels`` is 1 in the paper (2 in the training graph, see docs/decisions.md).
    This is the work the model needs, whatever extra the implementation does."""
    c1, c2 = spatial
    t1, t2, t3 = temporal
    macs = conv_macs(55, c1, 11, 1) + conv_macs(26, c2, 5, c1)
    for cin, hidden in ((c2, t1), (t1, t2), (t2, t3)):
        macs += conv_macs(26, 4 * hidden, 3, cin) + conv_macs(26, 4 * hidden, 3, hidden)
    # transposed convolutions: every input pixel scatters a k×k×out kernel
    macs += 26 * 26 * t3 * c1 * 5 * 5 + 55 * 55 * c1 * output_channels * 11 * 11
    return 2 * macs / 1e9
