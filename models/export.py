"""A model family's inference form as ONNX, with its input contract and calibration.

The graph is MXNet 1.9.1's own conversion (``mxnet.onnx``, mx2onnx) of the network the
detector runs (:meth:`models.family.ModelFamily.inference`), at ONNX opset 13 (the newest
mx2onnx writes), with a dynamic batch axis. Two things of mx2onnx's are done here instead:

- ``reshape`` with MXNet's special codes (``-2``, ``-3``, ``-4``: copy, merge and split
  axes), which mx2onnx refuses outside a few hard-coded shapes: every reshape becomes an
  ONNX ``Reshape`` to its MXNet-inferred shape, with ``-1`` on the one axis that scales
  with the batch;
- its graph check, which it runs against the installed onnx's newest opset, where
  ``ReduceMean`` and ``Split`` changed form: it is checked against opset 13, the opset the
  model declares.

:func:`export_onnx` writes ``PATH.onnx`` and ``PATH.json`` (the weights' metadata: model,
contract, calibration, provenance; and the graph's input and output) and, where the
weights carry calibration arrays (the scorer's per-pixel baseline), ``PATH.npz``: all an
exported model needs to be scored without MXNet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock

from models.registry import get_family
from models.weights import WeightsMeta, load_calibration_arrays, load_weights, weights_paths

#: The ONNX opset the graph declares: mx2onnx's translations are written for it.
OPSET = 13
#: The sidecar's ``format`` and ``format_version``.
FORMAT = "vadstream-onnx"
FORMAT_VERSION = 1
#: The graph's input name.
INPUT = "data"


class ExportError(ValueError):
    """A network cannot be converted to ONNX (the message names the op and why)."""


def onnx_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """The ``.onnx``, ``.json`` and ``.npz`` (calibration arrays) paths of an export."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".onnx", ".json", ".npz") else path
    return tuple(stem.with_name(stem.name + s) for s in (".onnx", ".json", ".npz"))


def input_names(count: int) -> list[str]:
    """The graph's input names for a network of ``count`` inputs: :data:`INPUT` for
    one, ``data0``, ``data1``, ... (in the network's argument order) for several."""
    return [INPUT] if count == 1 else [f"{INPUT}{i}" for i in range(count)]


def _node_shapes(sym: mx.sym.Symbol, params: dict, shapes: dict[str, tuple[int, ...]]
                 ) -> dict[str, tuple[int, ...]]:
    """The output shape of every node of ``sym`` for inputs of ``shapes`` (by name)."""
    internals = sym.get_internals()
    inputs = {n: params[n].shape for n in internals.list_inputs() if n in params}
    inputs.update(shapes)
    _, out, _ = internals.infer_shape(**inputs)
    return dict(zip(internals.list_outputs(), out, strict=True))


def _reshape_targets(sym: mx.sym.Symbol, params: dict, shapes: dict[str, tuple[int, ...]]
                     ) -> dict[str, list[int]]:
    """Per node, its output shape with ``-1`` on the axis that grows with the batch.

    Shapes are inferred at batches 2 and 3 (of every input): an axis that differs is the
    batch's (or a product of it with fixed sizes, which ``-1`` recovers). A node with no
    such axis is fixed (e.g. a reshaped weight); one with two cannot be a single
    ``Reshape``.
    """
    a = _node_shapes(sym, params, {k: (2, *s[1:]) for k, s in shapes.items()})
    b = _node_shapes(sym, params, {k: (3, *s[1:]) for k, s in shapes.items()})
    targets = {}
    for key, sa in a.items():
        if not key.endswith("_output"):
            continue
        moving = [i for i, (x, y) in enumerate(zip(sa, b[key], strict=True)) if x != y]
        target = list(sa)
        if len(moving) == 1:
            target[moving[0]] = -1
        elif moving:
            target = None        # refused if a reshape produces it
        targets[key[: -len("_output")]] = target
    return targets


@contextlib.contextmanager
def _conversion(targets: dict[str, list[int] | None]) -> Iterator[None]:
    """mx2onnx with this module's ``Reshape`` and its graph check at :data:`OPSET`."""
    import onnx
    import onnx.checker
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from onnx import helper

    def reshape(node: dict, **kwargs) -> list:
        name = node["name"]
        target = targets.get(name)
        if target is None:
            raise ExportError(f"reshape {name!r} moves the batch into more than one axis; "
                              "ONNX's Reshape cannot express that with a dynamic batch")
        source, index = node["inputs"][0][:2]
        data = kwargs["outputs_lookup"][source][index].name
        kwargs["initializer"].append(helper.make_tensor(
            f"{name}_shape", onnx.TensorProto.INT64, [len(target)], target))
        return [helper.make_node("Reshape", [data, f"{name}_shape"], [name], name=name)]

    table = MXNetGraph.registry_.setdefault(OPSET, {})
    saved_reshape = table.get("Reshape")
    context = onnx.checker.DEFAULT_CONTEXT
    saved_opsets = context.opset_imports
    table["Reshape"] = reshape
    context.opset_imports = {"": OPSET}
    try:
        yield
    finally:
        context.opset_imports = saved_opsets
        if saved_reshape is None:
            del table["Reshape"]
        else:
            table["Reshape"] = saved_reshape


def network_to_onnx(net: HybridBlock, *input_shapes: tuple[int, ...]):
    """The ONNX model of a Gluon network with float32 inputs, batch axis dynamic.

    Args:
        net: The network, initialised (hybridized here if it is not).
        input_shapes: One batch's shape, (N, ...), per input, in the order the network
            takes them (the inputs are named :func:`input_names`).

    Returns:
        An ``onnx.ModelProto`` (checked), its outputs in the order the network returns
        them.

    Raises:
        ExportError: If an op has no ONNX conversion, naming it and the reason.
        ImportError: If onnx is not installed.
    """
    import onnx
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from onnx import helper

    if not input_shapes:
        raise ExportError("no input shape given; pass one (N, ...) shape per input")
    names = input_names(len(input_shapes))
    net.hybridize()
    net(*(mx.nd.zeros(s) for s in input_shapes))
    sym = net(*(mx.sym.var(n) for n in names))
    if isinstance(sym, (list, tuple)):
        sym = mx.sym.Group(list(sym))
    params = {p.var().name: p.data() for p in net.collect_params().values()}
    shapes = dict(zip(names, input_shapes, strict=True))
    # mx2onnx takes the inputs' shapes in the order the graph reads them
    order = [n for n in sym.list_inputs() if n not in params]
    if sorted(order) != sorted(names):
        raise ExportError(f"the network reads inputs {order}, not {names}: every input "
                          "must be read")
    targets = _reshape_targets(sym, params, shapes)
    try:
        with _conversion(targets):
            graph = MXNetGraph().create_onnx_graph_proto(
                sym, params, [shapes[n] for n in order], [onnx.TensorProto.FLOAT] * len(order),
                opset_version=OPSET, dynamic=True,
                dynamic_input_shapes=[(None, *shapes[n][1:]) for n in order])
    except AttributeError as err:     # mx2onnx: "No conversion function registered for op"
        raise ExportError(f"MXNet's ONNX converter cannot convert this network: {err}") from err
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the converted graph is not valid ONNX opset {OPSET}: "
                          f"{str(err).splitlines()[0]}") from err
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="vadstream", producer_version=mx.__version__)
    # mx2onnx lists the weights among the inputs too: onnxruntime would then treat them
    # as overridable and not fold them into its fused kernels.
    weights = {i.name for i in model.graph.initializer}
    inputs = sorted((i for i in model.graph.input if i.name not in weights),
                    key=lambda i: names.index(i.name))
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    # and lists a graph's outputs in the order it meets their nodes: the network's order
    outputs = _output_names(sym)
    kept = sorted(model.graph.output, key=lambda o: outputs.index(o.name))
    del model.graph.output[:]
    model.graph.output.extend(kept)
    # and leaves constants no node reads (its Split's axis)
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model


def _output_names(sym: mx.sym.Symbol) -> list[str]:
    """The ONNX names mx2onnx gives ``sym``'s outputs, in order (its node's name, with
    an output's index after a multi-output node's)."""
    names = []
    for name in sym.list_outputs():
        head, _, index = name.rpartition("_output")
        names.append(head + index)
    return names


def inference_onnx(net: HybridBlock, meta: WeightsMeta):
    """The ONNX model of an inference network of weights ``meta`` (its input a batch of
    windows, (N, T, *contract shape))."""
    return network_to_onnx(net, (1, meta.window, *meta.contract.shape))


def export_onnx(weights: str | Path, out: str | Path, outputs: int | None = None
                ) -> tuple[Path, Path]:
    """Write the inference form of ``weights`` as ``OUT.onnx`` beside ``OUT.json`` (and
    ``OUT.npz`` for calibration arrays).

    Args:
        weights: Weights stem or ``.params`` path.
        out: The export's stem (or its ``.onnx`` path).
        outputs: Frames each window's output covers, where the family has a network for
            fewer than all (the STAE's decoder of the newest frames); None: the full one.

    Returns:
        The ``.onnx`` and ``.json`` paths.

    Raises:
        ExportError: If the family's inference network cannot be converted (names the op
            and why) or ``outputs`` is not one of its networks.
    """
    trained, meta = load_weights(weights)
    family = get_family(meta.model)
    nets = family.inference(trained, meta, mx.cpu(), outputs)
    frames = max(nets) if outputs is None else outputs
    if frames not in nets:
        raise ExportError(f"a {meta.model} model has inference networks for "
                          f"{sorted(nets)} output frames per window, not {outputs}; pass one "
                          "of those, or none for the full network")
    try:
        model = inference_onnx(nets[frames], meta)
    except ExportError as err:
        raise ExportError(f"{meta.model} ({weights}): {err}") from err
    onnx_path, json_path, npz_path = onnx_paths(out)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path.write_bytes(model.SerializeToString())
    arrays = load_calibration_arrays(weights, meta)
    if arrays:
        np.savez(npz_path, **arrays)
    params, _ = weights_paths(weights)
    sidecar = {"format": FORMAT, "format_version": FORMAT_VERSION,
               "onnx": onnx_path.name, "opset": OPSET,
               "input": {"name": INPUT, "shape": [None, meta.window, *meta.contract.shape],
                         "dtype": "float32"},
               "output": {"shape": [None, *family.output_shape(meta, frames)],
                          "frames": frames, "dtype": "float32"},
               "arrays": npz_path.name if arrays else None,
               "source": {"weights": str(weights),
                          "sha256": hashlib.sha256(params.read_bytes()).hexdigest()},
               "weights": meta.to_dict()}
    json_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    return onnx_path, json_path


def read_export(path: str | Path) -> tuple[bytes, WeightsMeta, dict[str, np.ndarray], dict]:
    """An export written by :func:`export_onnx`: the ONNX bytes, the weights' metadata,
    the calibration arrays and the sidecar itself.

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: If the sidecar is not a vadstream ONNX export of this format.
    """
    onnx_path, json_path, npz_path = onnx_paths(path)
    for p in (onnx_path, json_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found; write it with `vadstream export`")
    sidecar = json.loads(json_path.read_text())
    if sidecar.get("format") != FORMAT or sidecar.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{json_path} is not a {FORMAT} v{FORMAT_VERSION} sidecar; "
                         "re-export with `vadstream export`")
    meta = WeightsMeta.from_dict(sidecar["weights"], str(json_path))
    arrays = {}
    if sidecar.get("arrays"):
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    return onnx_path.read_bytes(), meta, arrays, sidecar
