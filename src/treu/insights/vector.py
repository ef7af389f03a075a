"""Segment expressions evaluated over all members at once.

A segment is written in the rules expression language (``treu.rules.expr``) over three
records: ``member`` (attributes), ``metrics`` (``treu.insights.metrics``) and ``scores``
(``member_scores``). ``compile_segment`` checks the text with the rules checker (the
same messages and positions as rule conditions) and then walks the checked tree,
turning each node into numpy / pandas operations on whole columns of a ``MemberTable``:
one comparison costs one vectorised pass over the members, never a Python call per
member.

The language's meaning is kept: a comparison with a missing value (None) is false
(``scores.churn_risk > 0.5`` is false for a member without a churn score), ``== None``
finds missing values, ``!=`` is the negation of ``==``, division by zero gives 0, and
``in`` / ``has_any`` / ``has_all`` / ``len`` work on the set-valued fields
(``'app' in metrics.channels``). ``bucket()`` is not available in segments.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from treu.insights.metrics import MemberTable
from treu.rules.expr import (
    BOOL,
    INT,
    NUMBER,
    STR,
    ExpressionError,
    Record,
    Scope,
    _Positions,
    check,
    optional,
    set_of,
)

MEMBER_FIELDS = {
    "tier": optional(STR),
    "days_enrolled": INT,
    "birthday_month": BOOL,
    "birth_month": optional(INT),
    "language": optional(STR),
    "channel": optional(STR),
    "consents": set_of(STR),
}
METRIC_FIELDS = {
    "recency_days": optional(INT),
    "first_purchase_days": optional(INT),
    "purchases": INT,
    "purchases_90": INT,
    "purchases_365": INT,
    "spend_90": INT,
    "spend_365": INT,
    "returns_365": INT,
    "average_basket_365": INT,
    "engagements_90": INT,
    "engagements_365": INT,
    "channels": set_of(STR),
    "categories": set_of(STR),
    "tags": set_of(STR),
    "engagement_types": set_of(STR),
}
SCORE_FIELDS = {
    "rfm_r": optional(INT),
    "rfm_f": optional(INT),
    "rfm_m": optional(INT),
    "rfm_segment": optional(STR),
    "clv_365": optional(INT),
    "p_alive": optional(NUMBER),
    "churn_risk": optional(NUMBER),
    "persona": optional(STR),
}
SEGMENT_SCOPE = Scope(
    {
        "member": Record(
            "member",
            MEMBER_FIELDS,
            "The member: tier code, days since enrolment, whether the birthday is in the "
            "current month (and its month 1-12), language, enrolment channel, the "
            "channels with marketing consent.",
        ),
        "metrics": Record(
            "metrics",
            METRIC_FIELDS,
            "Purchase and engagement metrics over the last 90 / 365 days; amounts in "
            "minor units (cents), net of returns.",
        ),
        "scores": Record(
            "scores",
            SCORE_FIELDS,
            "The member's scores: RFM (1-5 and the group), expected value in the next "
            "365 days (minor units), probability alive, churn risk (0-1), persona.",
        ),
    }
)
SET_FIELDS = frozenset(
    f"{root}.{name}"
    for root, record in SEGMENT_SCOPE.roots.items()
    for name, t in record.fields.items()
    if t.kind == "set"
)


@dataclass(frozen=True)
class SegmentExpression:
    source: str
    tree: ast.expr

    def evaluate(self, table: MemberTable) -> np.ndarray[Any, Any]:
        """A boolean per member of ``table``: who is in the segment."""
        result = _Evaluator(table, _Positions(self.source)).value(self.tree)
        return _as_bool(result, len(table))


def compile_segment(source: str) -> SegmentExpression:
    """Check ``source`` (``ExpressionError`` with its position if it is not a valid
    segment condition) and make sure every construct in it can be evaluated on
    columns, by evaluating it once over no members."""
    result = check(source, SEGMENT_SCOPE)
    positions = _Positions(source)
    tree = ast.parse("(" + source + "\n)", mode="eval").body
    if result != BOOL:
        raise positions.from_node(f"a segment condition must be bool, but this is {result}", tree)
    expression = SegmentExpression(source, tree)
    try:
        expression.evaluate(empty_table())
    except ExpressionError:
        raise
    except Exception as exc:  # a construct the column evaluation cannot do: refuse it
        raise positions.from_node(
            f"this condition cannot be computed for a segment ({type(exc).__name__}: {exc})",
            tree,
        ) from exc
    return expression


def _is_text(value: Any) -> bool:
    """A text value or column (text columns are object arrays; numbers are float or
    int, flags bool)."""
    return isinstance(value, str) or (isinstance(value, np.ndarray) and value.dtype == object)


def empty_table() -> MemberTable:
    columns: dict[str, Any] = {}
    for root, record in SEGMENT_SCOPE.roots.items():
        for name, t in record.fields.items():
            key = f"{root}.{name}"
            if t.kind == "set":
                continue
            if t.kind == "str":
                columns[key] = np.array([], dtype=object)
            elif t.kind == "bool":
                columns[key] = np.array([], dtype=bool)
            elif t.nullable or t.kind == "number":
                columns[key] = np.array([], dtype="float64")
            else:
                columns[key] = np.array([], dtype="int64")
    empty = (np.zeros(0, dtype="int64"), np.array([], dtype=object))
    return MemberTable([], pd.DataFrame(columns), dict.fromkeys(SET_FIELDS, empty))


@dataclass(frozen=True)
class _SetField:
    at: np.ndarray[Any, Any]
    values: np.ndarray[Any, Any]


@dataclass(frozen=True)
class _Literal:
    items: tuple[Any, ...]


_ORDER: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _as_bool(value: Any, n: int) -> np.ndarray[Any, Any]:
    if isinstance(value, np.ndarray):
        return value.astype(bool)
    return np.full(n, bool(value))


def _isna(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return pd.isna(value)
    return value is None


class _Evaluator:
    def __init__(self, table: MemberTable, positions: _Positions) -> None:
        self.table = table
        self.n = len(table)
        self.positions = positions

    def unsupported(self, what: str, node: ast.AST) -> ExpressionError:
        return self.positions.from_node(f"{what} is not available in segment conditions", node)

    def value(self, node: ast.expr) -> Any:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.unsupported(type(node).__name__, node)
        return method(node)

    # ---- leaves

    def visit_Constant(self, node: ast.Constant) -> Any:
        return _plain(node.value)

    def visit_List(self, node: ast.List | ast.Tuple | ast.Set) -> _Literal:
        items = []
        for item in node.elts:
            value = self.value(item)
            if isinstance(value, np.ndarray | _SetField | _Literal):
                raise self.unsupported("a list of fields", item)
            items.append(value)
        return _Literal(tuple(items))

    visit_Tuple = visit_List
    visit_Set = visit_List

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        assert isinstance(node.value, ast.Name)
        key = f"{node.value.id}.{node.attr}"
        if key in SET_FIELDS:
            at, values = self.table.sets[key]
            return _SetField(at, values)
        return self.table.columns[key].to_numpy()

    # ---- operators

    def visit_BoolOp(self, node: ast.BoolOp) -> np.ndarray[Any, Any]:
        parts = [_as_bool(self.value(v), self.n) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = parts[0]
        for part in parts[1:]:
            result = combine(result, part)
        return result

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        operand = self.value(node.operand)
        if isinstance(node.op, ast.Not):
            return ~_as_bool(operand, self.n)
        if isinstance(node.op, ast.USub):
            return -operand
        return operand

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.value(node.left), self.value(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        a = np.asarray(left, dtype="float64")
        b = np.asarray(right, dtype="float64")
        a, b = np.broadcast_arrays(a, b) if a.ndim or b.ndim else (a, b)
        zero = b == 0
        safe = np.where(zero, 1, b)
        if isinstance(node.op, ast.Div):
            result = np.where(zero, 0, a / safe)
        elif isinstance(node.op, ast.FloorDiv):
            result = np.where(zero, 0, np.floor_divide(a, safe))
        else:
            result = np.where(zero, 0, np.mod(a, safe))
        return result if result.ndim else result.item()

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        test = _as_bool(self.value(node.test), self.n)
        body, orelse = self.value(node.body), self.value(node.orelse)
        if any(isinstance(v, _SetField | _Literal) for v in (body, orelse)):
            raise self.unsupported("a set or list chosen by 'if … else'", node)
        out = np.where(test, np.asarray(body, dtype=object), np.asarray(orelse, dtype=object))
        if any(_is_text(v) for v in (body, orelse)):
            return out  # text stays text, even when it looks like a number
        return pd.Series(out, dtype=object).astype("float64").to_numpy()  # None -> NaN

    # ---- comparisons

    def visit_Compare(self, node: ast.Compare) -> np.ndarray[Any, Any]:
        operands = [self.value(node.left), *(self.value(c) for c in node.comparators)]
        result = np.ones(self.n, dtype=bool)
        for i, op in enumerate(node.ops):
            result &= _as_bool(self._compare(op, operands[i], operands[i + 1], node), self.n)
        return result

    def _compare(self, op: ast.cmpop, left: Any, right: Any, node: ast.Compare) -> Any:
        if isinstance(op, ast.Eq):
            return self._equal(left, right)
        if isinstance(op, ast.NotEq):
            return ~_as_bool(self._equal(left, right), self.n)
        if isinstance(op, ast.In):
            return self._contains(right, left, node)
        if isinstance(op, ast.NotIn):
            return ~_as_bool(self._contains(right, left, node), self.n)
        compare = _ORDER.get(type(op))
        if compare is None:
            raise self.unsupported("this comparison", node)
        if not isinstance(left, np.ndarray) and not isinstance(right, np.ndarray):
            return left is not None and right is not None and bool(compare(left, right))
        if (isinstance(left, np.ndarray) and left.dtype == object) or (
            isinstance(right, np.ndarray) and right.dtype == object
        ):
            lhs, rhs = pd.Series(left) if isinstance(left, np.ndarray) else left, right
            rhs = pd.Series(right) if isinstance(right, np.ndarray) else right
            present = ~(pd.isna(lhs) | pd.isna(rhs))
            out = np.zeros(self.n, dtype=bool)
            mask = np.asarray(present, dtype=bool)
            if mask.any():
                sub_l = lhs[mask] if isinstance(lhs, pd.Series) else lhs
                sub_r = rhs[mask] if isinstance(rhs, pd.Series) else rhs
                out[mask] = np.asarray(compare(sub_l, sub_r), dtype=bool)
            return out
        with np.errstate(invalid="ignore"):
            return np.asarray(compare(left, right), dtype=bool)  # NaN compares false

    def _equal(self, left: Any, right: Any) -> Any:
        if left is None or right is None:
            other = right if left is None else left
            return _isna(other)
        if not isinstance(left, np.ndarray) and not isinstance(right, np.ndarray):
            return left == right
        lhs = pd.Series(left) if isinstance(left, np.ndarray) else left
        rhs = pd.Series(right) if isinstance(right, np.ndarray) else right
        # Copies, not views: pandas' copy-on-write hands out read-only arrays.
        same = np.array(lhs == rhs, dtype=bool)
        if isinstance(left, np.ndarray) and isinstance(right, np.ndarray):
            same = same | (pd.isna(left) & pd.isna(right))
        return same

    def _contains(self, container: Any, item: Any, node: ast.expr) -> Any:
        if isinstance(container, _SetField):
            out = np.zeros(self.n, dtype=bool)
            if isinstance(item, np.ndarray):  # member.channel in metrics.channels
                match = container.values == item[container.at]
            else:
                match = container.values == item
            out[container.at[np.asarray(match, dtype=bool)]] = True
            return out
        if isinstance(container, _Literal):
            if isinstance(item, np.ndarray):
                wanted = [v for v in container.items if v is not None]
                found = np.array(pd.Series(item).isin(wanted), dtype=bool)
                if None in container.items:
                    found = found | pd.isna(item)
                return found
            return item in container.items
        if isinstance(container, np.ndarray) or isinstance(item, np.ndarray):
            # a substring: 'x' in member.language
            texts = pd.Series(container) if isinstance(container, np.ndarray) else None
            if texts is None or isinstance(item, np.ndarray):
                raise self.unsupported("'in' between two text fields", node)
            if item is None:
                return np.zeros(self.n, dtype=bool)
            return np.asarray(texts.str.contains(item, regex=False, na=False), dtype=bool)
        return container is not None and item is not None and item in container

    # ---- functions

    def visit_Call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        args = [self.value(a) for a in node.args]
        if name == "len":
            (arg,) = args
            if isinstance(arg, _SetField):
                return np.bincount(arg.at, minlength=self.n).astype("int64")
            if isinstance(arg, _Literal):
                return len(arg.items)
            if isinstance(arg, np.ndarray):
                return pd.Series(arg).str.len().fillna(0).to_numpy(dtype="int64")
            return len(arg) if isinstance(arg, str) else 0
        if name in ("has_any", "has_all"):
            collection, values = args
            if not isinstance(collection, _SetField) or not isinstance(values, _Literal):
                raise self.unsupported(f"{name}() other than on a member's set with a list", node)
            masks = [self._contains(collection, v, node) for v in values.items]
            if not masks:
                return np.full(self.n, name == "has_all")
            combine = np.logical_or if name == "has_any" else np.logical_and
            result = masks[0]
            for mask in masks[1:]:
                result = combine(result, mask)
            return result
        if name in ("lower", "upper"):
            (arg,) = args
            if isinstance(arg, np.ndarray):
                texts = pd.Series(arg, dtype=object)
                changed = texts.str.lower() if name == "lower" else texts.str.upper()
                return changed.where(texts.notna(), None).to_numpy(dtype=object)
            if not isinstance(arg, str):
                return None
            return arg.lower() if name == "lower" else arg.upper()
        if name in ("startswith", "endswith"):
            text, affix = args
            if isinstance(text, np.ndarray) and isinstance(affix, str):
                texts = pd.Series(text, dtype=object)
                found = (
                    texts.str.startswith(affix)
                    if name == "startswith"
                    else texts.str.endswith(affix)
                )
                return np.asarray(found.fillna(False), dtype=bool)
            if isinstance(text, str) and isinstance(affix, str):
                return text.startswith(affix) if name == "startswith" else text.endswith(affix)
            raise self.unsupported(f"{name}() with a field as the affix", node)
        if name == "abs":
            (arg,) = args
            return np.abs(arg)
        if name in ("min", "max"):
            pick = np.minimum if name == "min" else np.maximum
            result = args[0]
            for arg in args[1:]:
                result = pick(result, arg)
            return result
        raise self.unsupported(f"{name}()", node)
