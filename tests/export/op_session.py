"""A one-node ONNX Runtime session of an ai.edgespec op (libedgespec_ops.so registered), for the
op tests: inputs and outputs of any shape, the node's attributes as given."""

from __future__ import annotations

import onnxruntime as ort
from onnx import TensorProto, helper

from edgespec._ort import ops_library


def one_node_session(
    op: str, inputs: list[tuple[str, int]], output: str, threads: int | None = None, **attrs
) -> ort.InferenceSession:
    """inputs: (name, onnx TensorProto element type) in the node's order; one float output."""
    node = helper.make_node(op, [n for n, _ in inputs], [output], domain="ai.edgespec", **attrs)
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node], op, [vi(n, t, None) for n, t in inputs], [vi(output, TensorProto.FLOAT, None)]
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.edgespec", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    so.register_custom_ops_library(ops_library())
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
