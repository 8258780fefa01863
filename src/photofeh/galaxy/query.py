"""Row selections written as text (``photofeh mdf --where "abs(b) > 30 and sdss_g < 19"``), parsed and checked
before any row is read, and evaluated here on numpy columns: never handed to ``eval`` or to a pandas query
(which resolves ``@names`` and attributes, so a query could run any code).

The grammar is Python's expression syntax, restricted to: column names; numbers (and True/False); comparisons,
chained ones included (``-2 < feh < -1``); ``and``, ``or``, ``not`` and their elementwise spellings ``&``, ``|``,
``~``; ``+ - * / // % **``; parentheses; and the functions of :data:`FUNCTIONS` (``abs``, ``sqrt``,
``log10``). Anything else (attributes, subscripts, strings, ``@`` names, other calls, lambdas ...) is refused
with a message naming it.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["FUNCTIONS", "Where", "parse_where"]

FUNCTIONS = {"abs": np.abs, "sqrt": np.sqrt, "log10": np.log10}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_MAX_LENGTH = 2_000  # characters: a selection, not a program


class Where:
    """A parsed selection: :meth:`__call__` gives the boolean mask of a chunk of columns."""

    def __init__(self, text: str, tree: ast.Expression, names: list[str]):
        self.text, self.tree, self.names = text, tree, names

    def __call__(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        with np.errstate(all="ignore"):  # NaN compares False; log10 of a negative is NaN: not selected
            value = _evaluate(self.tree.body, columns)
        mask = np.asarray(value)
        if mask.dtype != bool:
            raise ValueError(f"--where {self.text!r} gives numbers, not true/false: compare them (e.g. '... > 0')")
        return np.broadcast_to(mask, (n,)).copy() if mask.ndim == 0 else mask


def parse_where(text: str, columns: Sequence[str]) -> Where:
    """Parse and check ``text`` against the table's ``columns``; ``ValueError`` naming what is not allowed."""
    if len(text) > _MAX_LENGTH:
        raise ValueError(f"--where is {len(text):,d} characters long; at most {_MAX_LENGTH:,d}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"--where {text!r} is not a valid expression ({exc.msg}); write e.g. "
                         "\"abs(b) > 30 and sdss_g < 19\"") from None
    names: list[str] = []
    for node in ast.walk(tree):
        problem = _refused(node)
        if problem:
            raise ValueError(f"--where {text!r}: {problem} is not allowed; a selection uses column names, numbers, "
                             "comparisons, and/or/not, + - * / ** and abs/sqrt/log10")
        if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
            names.append(node.id)
    unknown = sorted(set(names) - set(columns))
    if unknown:
        raise ValueError(f"--where {text!r}: no column {', '.join(map(repr, unknown))} in the predictions (columns: "
                         f"{', '.join(columns)}); keep the columns it needs with predict --keep")
    return Where(text, tree, sorted(set(names)))


def _refused(node: ast.AST) -> str | None:
    """Why ``node`` may not appear in a selection, or None."""
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Invert,
               ast.BinOp, ast.Compare, ast.Name, ast.Load, ast.Constant, *_BINARY, *_COMPARE)
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and len(node.args) == 1 \
                and not node.keywords:
            return None
        return f"the call {ast.unparse(node)!r}"
    if not isinstance(node, allowed):
        shown = f" {ast.unparse(node)!r}" if hasattr(node, "lineno") else ""
        return f"{type(node).__name__.lower()}{shown}"
    if isinstance(node, ast.Constant) and not isinstance(node.value, bool | int | float):
        return f"the constant {node.value!r}"
    return None


def _evaluate(node: ast.AST, columns: Mapping[str, np.ndarray]):
    """The value of a checked node on numpy columns."""
    if isinstance(node, ast.Constant):  # numbers as numpy floats: 10**10**10 overflows to inf, not a hang
        return node.value if isinstance(node.value, bool) else np.float64(node.value)
    if isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise ValueError(f"{node.id} is a function: call it, e.g. {node.id}(b)")
        return np.asarray(columns[node.id])
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](np.asarray(_evaluate(node.args[0], columns), float))
    if isinstance(node, ast.BoolOp):
        join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return join.reduce([np.asarray(_evaluate(v, columns), bool) for v in node.values])
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, columns)
        if isinstance(node.op, ast.Not | ast.Invert):
            return np.logical_not(np.asarray(value, bool))
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, columns), _evaluate(node.right, columns))
    if isinstance(node, ast.Compare):
        left, out = _evaluate(node.left, columns), True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, columns)
            out = np.logical_and(out, _COMPARE[type(op)](left, right))
            left = right
        return out
    raise ValueError(f"cannot evaluate {type(node).__name__}")  # unreachable after parse_where
