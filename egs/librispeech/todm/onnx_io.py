"""Writing, quantizing and opening ONNX graphs: what the offline export (``todm.export``) and the
streaming export (``todm.streaming``) share.

- ``export_graph``: torch.onnx.export (the legacy TorchScript exporter, ``dynamo=False``: it traces
  the scan's loop reliably and needs no onnxscript) + metadata + onnx.checker, atomically.
- ``quantize``: onnxruntime dynamic quantization to int8 weights, for every weight matrix of the
  graph: MatMul (and Gather for the decoder's embedding) as int8, Conv as uint8, because
  onnxruntime's ConvInteger kernels take uint8 weights only. The conv front end is a quarter
  of the smallest subnet's int8 encoder when it stays fp32; quantized, the smallest subnet's
  int8 files shrink from 0.35x to under 0.3x the fp32 ones. The first convolution is
  left in fp32: its input is the fbank itself (quantizing it would round the features to 256
  levels) and its 72 weights weigh nothing.
- ``session``: an onnxruntime session on one thread, as the device runs it; ``metadata``: a file's
  metadata.
"""

import itertools
import logging
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from todm.utils import atomic_write

OPSET = 13


def export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                 output_names: list[str], dynamic_axes: dict[str, dict[int, str]], meta: dict[str, str],
                 keep_node_names: str = "") -> None:
    """torch.onnx.export + short names (``compact_names``) + metadata + onnx.checker, written
    atomically to ``path``. Node names containing ``keep_node_names`` (if given) are kept."""

    def write(tmp: Path) -> None:
        torch.onnx.export(module, args, str(tmp), opset_version=OPSET, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes, dynamo=False)
        model = onnx.load(str(tmp))
        compact_names(model, keep_node_names)
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=str(value))
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))

    atomic_write(path, write)


def compact_names(model: onnx.ModelProto, keep: str = "") -> None:
    """Rename every node to n<i> and every tensor but the graph's inputs and outputs to t<i>, in
    place, subgraphs (the scan's Loop body) included.

    The exporter names them after the module path ("/encoder/layers.1/ssm/Slice_10_output_0"):
    about a hundred bytes per node, which the weights of a small model do not dwarf (in the
    smallest subnet's int8 encoder they were a fifth of the file). Nodes whose name contains
    ``keep`` (non-empty) keep it, so that onnxruntime can still name them in an error.
    """
    graph = model.graph
    outer = {v.name for v in graph.input} | {v.name for v in graph.output}
    tensors: dict[str, str] = {}
    node_ids = itertools.count()

    def short(name: str) -> str:
        if not name or name in outer:
            return name
        return tensors.setdefault(name, f"t{len(tensors):x}")

    def visit(g: onnx.GraphProto) -> None:
        for value in list(g.initializer) + list(g.value_info) + list(g.input) + list(g.output):
            value.name = short(value.name)
        for node in g.node:
            node.input[:] = [short(x) for x in node.input]
            node.output[:] = [short(x) for x in node.output]
            if not (keep and keep in node.name):
                node.name = f"n{next(node_ids):x}"
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    visit(sub)

    visit(graph)


def _quantizable_convs(path: Path) -> list[str]:
    """Names of the Conv nodes worth quantizing: all but those reading one input channel."""
    model = onnx.load(str(path))
    weights = {w.name: w.dims for w in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and n.input[1] in weights and weights[n.input[1]][1] > 1]


def quantize(src: Path, dst: Path, op_types: list[str]) -> None:
    """Dynamic int8 weights for ``op_types`` and uint8 for the Conv nodes (metadata is kept),
    written atomically to ``dst``.

    7-bit weights (``reduce_range``): onnxruntime's uint8 x int8 kernels on x86 CPUs without
    VNNI (AVX2) add pairs of products in int16, which saturates with 8-bit weights (the test
    model's encoder was 42% off fp32 on such a CPU; 1.5% with 7 bits). The shape annotations
    (value_info) the quantizer leaves in the graph are dropped: onnxruntime infers them when it
    loads the model, and in the smallest subnet's encoder they took 6% of the int8 file.
    """
    convs = _quantizable_convs(src)

    def write(tmp: Path) -> None:
        previous = logging.root.manager.disable  # the quantizer logs each tensor it skips, at INFO on the root logger
        logging.disable(logging.INFO)
        try:
            _quantize_twice(src, tmp, convs, op_types)
        finally:
            logging.disable(previous)

    atomic_write(dst, write)


def _quantize_twice(src: Path, tmp: Path, convs: list[str], op_types: list[str]) -> None:
    """``quantize``'s passes: the Conv nodes ``convs`` to uint8, then ``op_types`` to int8."""
    source = src
    if convs:
        quantize_dynamic(model_input=str(src), model_output=str(tmp), op_types_to_quantize=["Conv"],
                         nodes_to_quantize=convs, weight_type=QuantType.QUInt8, reduce_range=True)
        source = tmp
    quantize_dynamic(model_input=str(source), model_output=str(tmp), op_types_to_quantize=op_types,
                     weight_type=QuantType.QInt8, reduce_range=True)
    model = onnx.load(str(tmp))
    del model.graph.value_info[:]
    onnx.save(model, str(tmp))


def metadata(path: Path) -> dict[str, str]:
    """The metadata of an ONNX file, read without its external weights."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def session(path: Path, num_threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session on ``num_threads`` threads."""
    options = ort.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = num_threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
