"""What ``snn2chip inspect`` reports: nodes in order, joins, recurrent edges, totals."""

from __future__ import annotations

import nir
import numpy as np

from snn2chip.frontend import neurons
from snn2chip.frontend.graph import Graph

#: Node types whose elements are neurons on a chip (stateful units, and Threshold units).
NEURON_TYPES = (*neurons.NEURONS, nir.Threshold)
#: Fields that are hyper-parameters or bookkeeping, not parameters.
NOT_PARAMETERS = ("input_type", "output_type", "metadata", "input_shape", "stride", "padding", "dilation",
                  "groups", "kernel_size", "start_dim", "end_dim")


def parameter_count(node: nir.NIRNode) -> int:
    """Number of numeric parameter values stored in ``node`` (weights, biases, neuron constants)."""
    return sum(
        int(np.size(value))
        for field, value in vars(node).items()
        if field not in NOT_PARAMETERS and np.asarray(value).dtype.kind in "biuf"
    )


def model_neurons(graph: Graph) -> int:
    """The neurons of the NIR model itself: the elements of its neuron and Threshold nodes, without
    the stages of a converted max pool (helpers, :func:`neurons.pool_stage`)."""
    return sum(int(np.prod(graph.out_shapes[n])) for n, node in graph.nodes.items()
               if isinstance(node, NEURON_TYPES) and not neurons.pool_stage(node))


def summarize(graph: Graph) -> dict:
    """The inspect report as plain JSON-ready data."""
    rows = []
    for name, node in graph.nodes.items():
        out = graph.out_shapes[name]
        rows.append(
            {
                "name": name,
                "type": type(node).__name__,
                "input_shape": list(graph.in_shapes[name]),
                "output_shape": list(out),
                "params": parameter_count(node),
                "neurons": int(np.prod(out)) if isinstance(node, NEURON_TYPES) else 0,
                "inputs": graph.predecessors(name),
            }
        )
    return {
        "file": graph.source,
        "dt": graph.metadata.get("dt"),
        "inputs": graph.inputs,
        "outputs": graph.outputs,
        "nodes": rows,
        "edges": [list(e) for e in graph.edges],
        "joins": [{"node": n, "inputs": srcs} for n, srcs in graph.joins.items()],
        "recurrent_edges": [list(e) for e in graph.edges if e in graph.recurrent],
        "totals": {
            "nodes": len(rows),
            "edges": len(graph.edges),
            "params": sum(r["params"] for r in rows),
            "neurons": sum(r["neurons"] for r in rows),
        },
    }
