"""Straight-through estimators in an exported ONNX graph, rewritten to what they compute in inference.

Trainers write a binary forward pass as ``sign(x).detach() - f(x).detach() + f(x)`` (ReActNet, Bi-Real Net, the
hard-tanh STE) and weights as ``α·sign(W) - clamp(W).detach() + clamp(W)``. ``detach`` is the identity in
inference, so the exporters keep the arithmetic: ``Add(Sub(X, Y), Y)``. Its float value is X only up to rounding
(``(1 - p) + p`` need not be 1), but X is what the network means, and what a binary kernel can compute exactly, so
the sum is replaced by X — before TVM's importer folds the weight chain into a rounded constant. Also
``X + (Y - Y)`` → X (the ``x + (f(x) - f(x).detach())`` spelling). ``Identity`` nodes (the legacy exporter's
``detach``) are seen through. Pure graph rewiring: no value is computed here.
"""

from __future__ import annotations

from typing import Any


def _alias(graph: Any) -> dict[str, str]:
    """Tensor name → the name it is an Identity of (transitively)."""
    ident = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input}

    def root(name: str) -> str:
        seen = set()
        while name in ident and name not in seen:
            seen.add(name)
            name = ident[name]
        return name

    return {name: root(name) for name in ident}


def simplify_ste(model: Any) -> int:
    """Rewrite every STE sum of ``model`` (an ``onnx.ModelProto``, in place) to an ``Identity`` of the value it
    equals in inference; returns how many were rewritten."""
    graph = model.graph
    alias = _alias(graph)

    def same(name: str) -> str:
        return alias.get(name, name)

    producer = {same(o): n for n in graph.node for o in n.output}

    def sub_of(name: str) -> tuple[str, str] | None:
        node = producer.get(same(name))
        if node is None or node.op_type != "Sub" or len(node.input) != 2:
            return None
        return same(node.input[0]), same(node.input[1])

    rewritten = 0
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        a, b = node.input
        keep = None
        for s, other in ((a, b), (b, a)):
            sub = sub_of(s)
            if sub is None:
                continue
            x, y = sub
            if y == same(other):  # (X - Y) + Y
                keep = x
            elif x == y:  # other + (Y - Y)
                keep = other
            if keep is not None:
                break
        if keep is None:
            continue
        out = node.output[0]
        node.Clear()
        node.op_type, node.name = "Identity", f"ste_{out}"
        node.input.append(keep)
        node.output.append(out)
        rewritten += 1
    return rewritten
