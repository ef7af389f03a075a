"""The rule expression language: a small, typed subset of Python's expression grammar.

Marketing staff write conditions such as ``'organic' in line.tags and event.channel ==
'app'``. A condition is parsed with the standard ``ast`` module, every node is checked
against a whitelist and type-checked against a declared ``Scope``, and the checked tree
is translated into Python source text that only ever mentions

* the local variable names the caller chose for the scope's roots,
* fields declared in the scope (identifiers we wrote, never the user's),
* literals re-emitted with ``repr`` (strings, ints, Decimals as hoisted constants),
* the ``_rt_*`` helper functions of this module.

That text is compiled with ``compile()`` once, when a rule set is published, and run
with empty ``__builtins__``. Nothing the user typed is ever passed to ``eval``; the
generated text is built from the *checked tree*, so a construct the checker does not
know cannot reach it. Evaluating compiled code costs about what hand-written Python
costs (tens of nanoseconds per comparison), which an interpreter walking the tree per
check cannot match (see ``benchmarks/rules_eval.py``).

Numbers stay exact: ``1.5`` is read as ``Decimal("1.5")`` from the source text, ``/``
divides Decimals, and division by zero gives 0 instead of an exception, because a
condition must never crash a checkout. Comparisons involving a missing (``None``) value
are simply false.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import io
import re
import tokenize
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

MAX_SOURCE_CHARS = 2_000
MAX_NODES = 300
MAX_DEPTH = 30
MAX_INT = 10**15
MAX_STRING_CHARS = 500
MAX_COLLECTION_ITEMS = 200
MAX_DECIMAL_PLACES = 15

# --------------------------------------------------------------------------- errors


class ExpressionError(ValueError):
    """A syntax error, forbidden construct or type error, with the position at fault.

    ``line`` and ``column`` are 1-based (what an editor shows), ``offset`` is the
    0-based character index into the source (what a web form needs to place a marker).
    """

    def __init__(self, message: str, *, line: int = 1, column: int = 1, offset: int = 0) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.line = line
        self.column = column
        self.offset = offset

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "offset": self.offset,
        }


class _Positions:
    """Maps parser positions (line + UTF-8 byte column) to characters and back."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.starts = [0]
        for match in re.finditer(r"\r\n|\r|\n", source):
            self.starts.append(match.end())

    def from_offset(self, message: str, offset: int) -> ExpressionError:
        offset = max(0, min(offset, len(self.source)))
        line = 0
        for n, start in enumerate(self.starts):
            if start <= offset:
                line = n
        return ExpressionError(
            message, line=line + 1, column=offset - self.starts[line] + 1, offset=offset
        )

    def char_offset(self, line: int, char_column: int) -> int:
        """``line`` 1-based, ``char_column`` 0-based characters within that line."""
        if line > len(self.starts):
            return len(self.source)
        return self.starts[line - 1] + char_column

    def from_node(self, message: str, node: ast.AST) -> ExpressionError:
        """``node`` comes from parsing ``"(" + source + "\\n)"``: line 1 is shifted by one."""
        line: int = getattr(node, "lineno", 1)
        byte_col: int = getattr(node, "col_offset", 0)
        if line > len(self.starts):
            return self.from_offset(message, len(self.source))
        start = self.starts[line - 1]
        end = self.starts[line] if line < len(self.starts) else len(self.source)
        if line == 1:
            byte_col -= 1
        text = self.source[start:end]
        column = len(text.encode("utf-8")[: max(byte_col, 0)].decode("utf-8", "ignore"))
        return self.from_offset(message, start + column)


# --------------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class Type:
    """A value type. ``kind`` is one of bool, int, number, str, date, list, set, any,
    none (the ``None`` literal), map (a free-form attribute map) or record."""

    kind: str
    nullable: bool = False
    elem: Type | None = None

    def __str__(self) -> str:
        if self.kind in ("list", "set"):
            text = f"{self.kind}[{self.elem if self.elem is not None else 'empty'}]"
        elif self.kind == "none":
            return "None"
        else:
            text = self.kind
        return f"{text} or None" if self.nullable else text

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "number")

    def optional(self) -> Type:
        return Type(self.kind, True, self.elem)

    def required(self) -> Type:
        return Type(self.kind, False, self.elem)


BOOL = Type("bool")
INT = Type("int")
NUMBER = Type("number")
STR = Type("str")
DATE = Type("date")
ANY = Type("any", nullable=True)
NONE = Type("none", nullable=True)
MAP = Type("map")


def list_of(elem: Type) -> Type:
    return Type("list", elem=elem)


def set_of(elem: Type) -> Type:
    return Type("set", elem=elem)


def optional(t: Type) -> Type:
    return t.optional()


@dataclass(frozen=True)
class Record:
    """A declared record (``event``, ``member``, ``line``) and its fields."""

    name: str
    fields: Mapping[str, Type]
    description: str = ""


@dataclass(frozen=True)
class Scope:
    """The roots an expression may mention, in the order a compiled ``Condition``
    takes them."""

    roots: Mapping[str, Record] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """``{"event.channel": "str or None", ...}``: for documentation and editors."""
        return {
            f"{root}.{name}": ("map of any" if t.kind == "map" else str(t))
            for root, record in self.roots.items()
            for name, t in record.fields.items()
        }


# --------------------------------------------------------------------------- runtime

_DIVISION = Context(prec=34)


def _rt_lt(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return bool(a < b)
    except (TypeError, ArithmeticError):
        return False


def _rt_le(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return bool(a <= b)
    except (TypeError, ArithmeticError):
        return False


def _rt_gt(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return bool(a > b)
    except (TypeError, ArithmeticError):
        return False


def _rt_ge(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return bool(a >= b)
    except (TypeError, ArithmeticError):
        return False


def _rt_eq(a: Any, b: Any) -> bool:
    """Equality for free-form values: a JSON list or dict never equals a literal by
    accident of Python's rules, and comparing never raises."""
    try:
        return bool(a == b)
    except (TypeError, ArithmeticError):
        return False


_CONTAINERS = (str, list, tuple, set, frozenset, dict)
_COLLECTIONS = (list, tuple, set, frozenset)


def _rt_in(a: Any, b: Any) -> bool:
    if not isinstance(b, _CONTAINERS):
        return False
    if isinstance(b, str) and not isinstance(a, str):
        return False
    try:
        return a in b
    except (TypeError, ArithmeticError):
        return False


def _rt_len(x: Any) -> int:
    return len(x) if isinstance(x, _CONTAINERS) else 0


def _rt_lower(x: Any) -> str | None:
    return x.lower() if isinstance(x, str) else None


def _rt_upper(x: Any) -> str | None:
    return x.upper() if isinstance(x, str) else None


def _rt_startswith(s: Any, p: Any) -> bool:
    return isinstance(s, str) and isinstance(p, str) and s.startswith(p)


def _rt_endswith(s: Any, p: Any) -> bool:
    return isinstance(s, str) and isinstance(p, str) and s.endswith(p)


def _rt_has_any(collection: Any, values: Any) -> bool:
    if not isinstance(collection, _COLLECTIONS) or not isinstance(values, _COLLECTIONS):
        return False
    try:
        return any(v in collection for v in values)
    except (TypeError, ArithmeticError):
        return False


def _rt_has_all(collection: Any, values: Any) -> bool:
    if not isinstance(collection, _COLLECTIONS) or not isinstance(values, _COLLECTIONS):
        return False
    try:
        return all(v in collection for v in values)
    except (TypeError, ArithmeticError):
        return False


def _rt_div(a: int | Decimal, b: int | Decimal) -> Decimal:
    if b == 0:
        return Decimal(0)
    return _DIVISION.divide(Decimal(a), Decimal(b))


def _rt_floordiv(a: int | Decimal, b: int | Decimal) -> int:
    if b == 0:
        return 0
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    quotient = Fraction(a) / Fraction(b)
    return quotient.numerator // quotient.denominator


def _rt_mod(a: int | Decimal, b: int | Decimal) -> int | Decimal:
    if b == 0:
        return 0
    if isinstance(a, int) and isinstance(b, int):
        return a % b
    return _DIVISION.subtract(Decimal(a), _DIVISION.multiply(Decimal(b), _rt_floordiv(a, b)))


def _rt_abs(x: int | Decimal) -> int | Decimal:
    return -x if x < 0 else x


def _rt_min(*values: int | Decimal) -> int | Decimal:
    best = values[0]
    for v in values[1:]:
        if v < best:
            best = v
    return best


def _rt_max(*values: int | Decimal) -> int | Decimal:
    best = values[0]
    for v in values[1:]:
        if v > best:
            best = v
    return best


BUCKETS = 100


def bucket_of(value: str, salt: str) -> int:
    """``value``'s bucket under ``salt``: 0..99, the same in every process and release.

    The first eight bytes of SHA-256 over ``salt:value``, modulo 100 (the bias of 2**64
    modulo 100 is below 10**-17). Python's ``hash`` would not do: it is salted per
    process. A campaign's control group is ``bucket_of(member id, 'campaign:<id>') <
    holdout``, so a member stays in the same arm whatever process sees the event."""
    digest = hashlib.sha256(f"{salt}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def _rt_bucket(value: Any, salt: Any) -> int | None:
    if not isinstance(value, str) or not isinstance(salt, str):
        return None
    return bucket_of(value, salt)


RUNTIME: Mapping[str, Any] = {
    "_rt_D": Decimal,
    "_rt_date": date,
    "_rt_fs": frozenset,
    "_rt_lt": _rt_lt,
    "_rt_le": _rt_le,
    "_rt_gt": _rt_gt,
    "_rt_ge": _rt_ge,
    "_rt_eq": _rt_eq,
    "_rt_in": _rt_in,
    "_rt_len": _rt_len,
    "_rt_blen": len,
    "_rt_lower": _rt_lower,
    "_rt_upper": _rt_upper,
    "_rt_startswith": _rt_startswith,
    "_rt_endswith": _rt_endswith,
    "_rt_has_any": _rt_has_any,
    "_rt_has_all": _rt_has_all,
    "_rt_div": _rt_div,
    "_rt_floordiv": _rt_floordiv,
    "_rt_mod": _rt_mod,
    "_rt_abs": _rt_abs,
    "_rt_min": _rt_min,
    "_rt_max": _rt_max,
    "_rt_bucket": _rt_bucket,
}
"""Everything generated code may refer to besides the caller's variables and hoisted
constants. Generated code runs with ``{"__builtins__": {}}`` plus these names."""


def runtime_globals(constants: Mapping[str, object] | None = None) -> dict[str, Any]:
    """A fresh globals dict for ``exec`` of generated code."""
    namespace: dict[str, Any] = {"__builtins__": {}}
    namespace.update(RUNTIME)
    if constants:
        namespace.update(constants)
    return namespace


# --------------------------------------------------------------------------- checker

FUNCTIONS = (
    "len",
    "abs",
    "min",
    "max",
    "lower",
    "upper",
    "startswith",
    "endswith",
    "has_any",
    "has_all",
    "bucket",
)

_FORBIDDEN: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.Slice: "slices are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}

_BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
}

_ORDERING: dict[type[ast.cmpop], tuple[str, str]] = {
    ast.Lt: ("<", "_rt_lt"),
    ast.LtE: ("<=", "_rt_le"),
    ast.Gt: (">", "_rt_gt"),
    ast.GtE: (">=", "_rt_ge"),
}

_HASHABLE = ("bool", "int", "number", "str", "date", "none")


@dataclass(frozen=True, slots=True)
class _Value:
    code: str
    type: Type
    literal: tuple[Any, ...] | None = None  # the items of a collection literal
    text: str | None = None  # a str literal's value (for date comparisons)
    simple: bool = True  # safe to use directly in a Python comparison chain


class _Checker:
    def __init__(
        self,
        positions: _Positions,
        scope: Scope,
        names: Mapping[str, str],
        constants: dict[str, object] | None,
    ) -> None:
        self.pos = positions
        self.scope = scope
        self.names = names
        self.constants = constants

    # ---- helpers

    def error(self, message: str, node: ast.AST) -> ExpressionError:
        return self.pos.from_node(message, node)

    def constant(self, value: object, inline: str) -> str:
        if self.constants is None:
            return inline
        name = f"_k{len(self.constants)}"
        while name in self.constants:  # pragma: no cover - names are sequential
            name += "_"
        self.constants[name] = value
        return name

    def forget(self, code: str) -> None:
        """Drop a hoisted constant that a rewrite made unnecessary."""
        if self.constants is not None and code in self.constants:
            del self.constants[code]

    def quoted(self, node: ast.AST) -> str:
        text = self.describe(node)
        if text == "this value" or text[:1] in ("'", '"'):
            return text
        return f"'{text}'"

    def attribute_error(self, message: str, node: ast.Attribute) -> ExpressionError:
        """Point at the attribute's name, not at the start of ``event.``."""
        if node.end_lineno == node.lineno and node.end_col_offset is not None:
            marker = ast.Name(id=node.attr)
            marker.lineno = node.lineno
            marker.col_offset = node.end_col_offset - len(node.attr.encode("utf-8"))
            return self.error(message, marker)
        return self.error(message, node)

    def describe(self, node: ast.AST) -> str:
        segment = ast.get_source_segment("(" + self.pos.source + "\n)", node)
        if segment is None or len(segment) > 40:
            return "this value"
        return segment

    # ---- entry

    def value(self, node: ast.expr) -> _Value:
        forbidden = _FORBIDDEN.get(type(node))
        if forbidden is not None:
            raise self.error(forbidden, node)
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise self.error(f"{type(node).__name__} expressions are not allowed", node)
        result: _Value = method(node)
        if result.type.kind == "record":
            raise self.error(
                f"{self.quoted(node)} is a record; use one of its fields, e.g. "
                f"{self.describe(node)}.{next(iter(self._record(node).fields), 'field')}",
                node,
            )
        if result.type.kind == "map":
            raise self.error(
                f"{self.quoted(node)} is an attribute map; "
                f'look a key up with {self.describe(node)}["key"]',
                node,
            )
        return result

    def _record(self, node: ast.expr) -> Record:
        assert isinstance(node, ast.Name)
        return self.scope.roots[node.id]

    # ---- literals

    def visit_Constant(self, node: ast.Constant) -> _Value:
        value = node.value
        if value is None:
            return _Value("None", NONE)
        if isinstance(value, bool):
            return _Value(repr(value), BOOL)
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise self.error(f"number too large (at most {MAX_INT:,})", node)
            return _Value(repr(value), INT)
        if isinstance(value, float):
            number = self._decimal(node)
            return _Value(self.constant(number, f"_rt_D({str(number)!r})"), NUMBER)
        if isinstance(value, str):
            if len(value) > MAX_STRING_CHARS:
                raise self.error(f"string too long (at most {MAX_STRING_CHARS} characters)", node)
            return _Value(repr(value), STR, text=value)
        if isinstance(value, bytes):
            raise self.error("bytes literals are not allowed", node)
        if isinstance(value, complex):
            raise self.error("complex numbers are not allowed", node)
        raise self.error(f"{value!r} is not allowed", node)

    def _decimal(self, node: ast.Constant) -> Decimal:
        segment = ast.get_source_segment("(" + self.pos.source + "\n)", node) or ""
        try:
            number = Decimal(segment.replace("_", ""))
        except InvalidOperation:
            raise self.error("not a number", node) from None
        if not number.is_finite() or abs(number) > MAX_INT:
            raise self.error(f"number too large (at most {MAX_INT:,})", node)
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
            raise self.error(f"too many decimal places (at most {MAX_DECIMAL_PLACES})", node)
        return number

    def _literal_item(self, node: ast.expr) -> tuple[object, Type]:
        if isinstance(node, ast.Constant) and not isinstance(node.value, bytes | complex):
            v = self.visit_Constant(node)
            if node.value is None:
                return None, NONE
            if isinstance(node.value, float):
                return self._decimal(node), NUMBER
            return node.value, v.type
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
            and not isinstance(node.operand.value, bool)
        ):
            number, t = self._literal_item(node.operand)
            assert isinstance(number, int | Decimal)
            return -number, t
        raise self.error("collection items must be literals (strings, numbers, True/False)", node)

    def _collection(self, node: ast.List | ast.Tuple | ast.Set, kind: str) -> _Value:
        if len(node.elts) > MAX_COLLECTION_ITEMS:
            raise self.error(f"too many items (at most {MAX_COLLECTION_ITEMS})", node)
        items: list[object] = []
        elem: Type | None = None
        for item in node.elts:
            value, t = self._literal_item(item)
            if elem is None:
                elem = t
            else:
                joined = _join(elem, t)
                if joined is None:
                    raise self.error(f"all items must have the same type ({elem} vs {t})", item)
                elem = joined
            items.append(value)
        codes = []
        for item_value in items:
            if isinstance(item_value, Decimal):
                codes.append(f"_rt_D({str(item_value)!r})")
            else:
                codes.append(repr(item_value))
        inline = "(" + "".join(c + ", " for c in codes) + ")"
        literal = tuple(items)
        return _Value(self.constant(literal, inline), Type(kind, elem=elem), literal=literal)

    def visit_List(self, node: ast.List) -> _Value:
        return self._collection(node, "list")

    def visit_Tuple(self, node: ast.Tuple) -> _Value:
        return self._collection(node, "list")

    def visit_Set(self, node: ast.Set) -> _Value:
        return self._collection(node, "set")

    # ---- names and fields

    def visit_Name(self, node: ast.Name) -> _Value:
        if node.id.startswith("_"):
            raise self.error(f"names starting with '_' are not allowed: '{node.id}'", node)
        if node.id in self.scope.roots:
            return _Value(self.names[node.id], Type("record"))
        if node.id in FUNCTIONS:
            raise self.error(f"'{node.id}' is a function; call it, e.g. {node.id}(...)", node)
        hint = _did_you_mean(node.id, list(self.scope.roots))
        roots = ", ".join(self.scope.roots)
        raise self.error(f"unknown name '{node.id}'{hint} (available: {roots})", node)

    def visit_Attribute(self, node: ast.Attribute) -> _Value:
        if node.attr.startswith("_"):
            raise self.attribute_error(f"attribute '{node.attr}' is not allowed", node)
        base = node.value
        if not isinstance(base, ast.Name) or base.id not in self.scope.roots:
            if isinstance(base, ast.Name):
                self.visit_Name(base)  # raises the unknown-name error
            raise self.error(
                f"'.{node.attr}' is not allowed here: fields exist only on "
                f"{', '.join(self.scope.roots)}"
                + (f"; use {node.attr}(...) as a function" if node.attr in FUNCTIONS else ""),
                node,
            )
        record = self.scope.roots[base.id]
        t = record.fields.get(node.attr)
        if t is None:
            hint = _did_you_mean(node.attr, list(record.fields), prefix=f"{base.id}.")
            if not hint:
                hint = f" ({base.id} has: {', '.join(record.fields)})"
            raise self.attribute_error(f"unknown field '{base.id}.{node.attr}'{hint}", node)
        return _Value(f"{self.names[base.id]}.{node.attr}", t)

    def visit_Subscript(self, node: ast.Subscript) -> _Value:
        if isinstance(node.slice, ast.Slice):
            raise self.error("slices are not allowed", node.slice)
        target = node.value
        if not isinstance(target, ast.Attribute):
            raise self.error(
                '[...] is only allowed on attribute maps, e.g. event.attrs["key"]', node
            )
        base = self.visit_Attribute(target)
        if base.type.kind != "map":
            raise self.error(
                f'[...] is only allowed on attribute maps, e.g. event.attrs["key"]; '
                f"{self.quoted(target)} is {base.type}",
                node,
            )
        key = node.slice
        if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
            raise self.error('the key must be a string literal, e.g. ["rating"]', key)
        if len(key.value) > MAX_STRING_CHARS:
            raise self.error(f"string too long (at most {MAX_STRING_CHARS} characters)", key)
        return _Value(f"{base.code}.get({key.value!r})", ANY, simple=False)

    # ---- operators

    def visit_BoolOp(self, node: ast.BoolOp) -> _Value:
        parts = [self._bool(v, "and/or") for v in node.values]
        op = " and " if isinstance(node.op, ast.And) else " or "
        return _Value("(" + op.join(p.code for p in parts) + ")", BOOL)

    def _bool(self, node: ast.expr, what: str) -> _Value:
        v = self.value(node)
        if v.type != BOOL:
            raise self.error(
                f"{what} needs True/False, but {self.quoted(node)} is {v.type}"
                + _compare_hint(v.type),
                node,
            )
        return v

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Value:
        if isinstance(node.op, ast.Not):
            v = self._bool(node.operand, "not")
            return _Value(f"(not {v.code})", BOOL)
        if isinstance(node.op, ast.Invert):
            raise self.error("bitwise operators are not allowed", node)
        v = self._number(node.operand, "unary minus")
        sign = "-" if isinstance(node.op, ast.USub) else "+"
        return _Value(f"({sign}{v.code})", v.type)

    def _number(self, node: ast.expr, what: str) -> _Value:
        v = self.value(node)
        if not v.type.numeric or v.type.nullable:
            raise self.error(f"{what} needs numbers, but {self.quoted(node)} is {v.type}", node)
        return v

    def visit_BinOp(self, node: ast.BinOp) -> _Value:
        symbol = _BINOPS.get(type(node.op))
        if symbol is None:
            if isinstance(node.op, ast.Pow):
                raise self.error("** (power) is not allowed", node)
            raise self.error("bitwise and matrix operators are not allowed", node)
        left = self._number(node.left, f"'{symbol}'")
        right = self._number(node.right, f"'{symbol}'")
        both_int = left.type == INT and right.type == INT
        if symbol == "/":
            return _Value(f"_rt_div({left.code}, {right.code})", NUMBER)
        if symbol == "//":
            return _Value(f"_rt_floordiv({left.code}, {right.code})", INT)
        if symbol == "%":
            return _Value(f"_rt_mod({left.code}, {right.code})", INT if both_int else NUMBER)
        return _Value(f"({left.code} {symbol} {right.code})", INT if both_int else NUMBER)

    def visit_IfExp(self, node: ast.IfExp) -> _Value:
        test = self._bool(node.test, "the condition of 'x if condition else y'")
        body = self.value(node.body)
        orelse = self.value(node.orelse)
        t = _join(body.type, orelse.type)
        if t is None:
            raise self.error(
                f"both branches must have the same type ({body.type} vs {orelse.type})", node
            )
        return _Value(f"({body.code} if {test.code} else {orelse.code})", t, simple=False)

    # ---- comparisons

    def visit_Compare(self, node: ast.Compare) -> _Value:
        operands = [self.value(node.left)]
        nodes: list[ast.expr] = [node.left]
        for comparator in node.comparators:
            operands.append(self.value(comparator))
            nodes.append(comparator)
        pieces: list[tuple[str, bool]] = []  # (code, is a plain "a op b")
        for i, op in enumerate(node.ops):
            left, right = operands[i], operands[i + 1]
            left, right = self._date_literals(left, right, nodes[i], nodes[i + 1])
            operands[i], operands[i + 1] = left, right
            pieces.append(self._compare(op, left, right, nodes[i], nodes[i + 1], node))
        if all(plain for _, plain in pieces) and len(pieces) > 1:
            # A plain chain: Python evaluates each middle operand once.
            text = operands[0].code
            for op, operand in zip(node.ops, operands[1:], strict=True):
                text += f" {_OP_TEXT[type(op)]} {operand.code}"
            return _Value(f"({text})", BOOL)
        if len(pieces) == 1:
            return _Value(f"({pieces[0][0]})", BOOL)
        return _Value("(" + " and ".join(f"({code})" for code, _ in pieces) + ")", BOOL)

    def _date_literals(
        self, left: _Value, right: _Value, lnode: ast.expr, rnode: ast.expr
    ) -> tuple[_Value, _Value]:
        """``event.date >= '2026-12-01'``: an ISO date string compared with a date."""
        if left.type.kind == "date" and right.text is not None:
            return left, self._date(right, rnode)
        if right.type.kind == "date" and left.text is not None:
            return self._date(left, lnode), right
        return left, right

    def _date(self, value: _Value, node: ast.expr) -> _Value:
        assert value.text is not None
        try:
            day = date.fromisoformat(value.text)
        except ValueError:
            raise self.error(
                f"'{value.text}' is not a date; write dates as 'YYYY-MM-DD'", node
            ) from None
        inline = f"_rt_date({day.year}, {day.month}, {day.day})"
        return _Value(self.constant(day, inline), DATE)

    def _compare(
        self,
        op: ast.cmpop,
        left: _Value,
        right: _Value,
        lnode: ast.expr,
        rnode: ast.expr,
        node: ast.Compare,
    ) -> tuple[str, bool]:
        if isinstance(op, ast.Is | ast.IsNot):
            raise self.error("'is' is not allowed; use == None or != None", node)
        if isinstance(op, ast.Eq | ast.NotEq):
            self._check_equality(left.type, right.type, rnode)
            text = "==" if isinstance(op, ast.Eq) else "!="
            if left.type.kind == "any" or right.type.kind == "any":
                code = f"_rt_eq({left.code}, {right.code})"
                return (code if text == "==" else f"not {code}"), False
            return f"{left.code} {text} {right.code}", left.simple and right.simple
        if isinstance(op, ast.In | ast.NotIn):
            code = self._membership(left, right, lnode, rnode)
            if isinstance(op, ast.NotIn):
                return f"not ({code})", False
            return code, False
        symbol, helper = _ORDERING[type(op)]
        for v, n in ((left, lnode), (right, rnode)):
            if v.type.kind not in ("int", "number", "str", "date", "any"):
                raise self.error(
                    f"'{symbol}' needs numbers, strings or dates, but {self.quoted(n)} is {v.type}",
                    n,
                )
        lk, rk = left.type.kind, right.type.kind
        if lk != "any" and rk != "any" and not (left.type.numeric and right.type.numeric):
            if lk != rk:
                raise self.error(f"cannot compare {left.type.required()} with {rk}", rnode)
        if left.type.nullable or right.type.nullable:
            return f"{helper}({left.code}, {right.code})", False
        return f"{left.code} {symbol} {right.code}", left.simple and right.simple

    def _check_equality(self, a: Type, b: Type, node: ast.expr) -> None:
        if a.kind == "any" or b.kind == "any":
            return
        if a.kind == "none" or b.kind == "none":
            other = b if a.kind == "none" else a
            if not other.nullable:
                raise self.error(f"cannot compare {other} with None: it is never None", node)
            return
        if a.kind in ("list", "set") or b.kind in ("list", "set"):
            raise self.error(
                "lists cannot be compared with == or !=; use has_any(), has_all() or 'in'",
                node,
            )
        if not _comparable(a, b):
            raise self.error(f"cannot compare {a.required()} with {b.required()}", node)

    def _membership(self, left: _Value, right: _Value, lnode: ast.expr, rnode: ast.expr) -> str:
        rk = right.type.kind
        if rk == "any":
            return f"_rt_in({left.code}, {right.code})"
        if rk == "str":
            if left.type.kind not in ("str", "any"):
                raise self.error(
                    f"'in' on a string looks for a substring, but {self.quoted(lnode)} "
                    f"is {left.type}",
                    lnode,
                )
            if left.type.nullable or right.type.nullable:
                return f"_rt_in({left.code}, {right.code})"
            return f"{left.code} in {right.code}"
        if rk not in ("list", "set"):
            raise self.error(
                f"'in' needs a list, set or string on the right, but "
                f"{self.quoted(rnode)} is {right.type}",
                rnode,
            )
        elem = right.type.elem
        if elem is not None and left.type.kind != "any":
            if left.type.kind == "none":
                pass
            elif not _comparable(left.type, elem):
                raise self.error(f"cannot look for {left.type.required()} in {right.type}", lnode)
        if right.literal is not None:
            if left.type.kind in _HASHABLE and all(not isinstance(i, list) for i in right.literal):
                # Hoisted as a frozenset: one hash lookup, whatever the list's length.
                self.forget(right.code)
                frozen = frozenset(right.literal)
                items = ", ".join(
                    f"_rt_D({str(i)!r})" if isinstance(i, Decimal) else repr(i)
                    for i in right.literal
                )
                code = self.constant(frozen, f"_rt_fs(({items},))" if items else "_rt_fs()")
                return f"{left.code} in {code}"
            return f"_rt_in({left.code}, {right.code})"
        if right.type.nullable:
            return f"_rt_in({left.code}, {right.code})"
        return f"{left.code} in {right.code}"

    # ---- calls

    def visit_Call(self, node: ast.Call) -> _Value:
        func = node.func
        if isinstance(func, ast.Attribute):
            hint = (
                f"; write {func.attr}(value, ...) instead"
                if func.attr in FUNCTIONS
                else f" (functions: {', '.join(FUNCTIONS)})"
            )
            raise self.error(f"method calls are not allowed{hint}", node)
        if not isinstance(func, ast.Name):
            raise self.error("only the built-in functions can be called", node)
        if func.id not in FUNCTIONS:
            hint = _did_you_mean(func.id, list(FUNCTIONS))
            raise self.error(
                f"unknown function '{func.id}'{hint} (functions: {', '.join(FUNCTIONS)})", node
            )
        for keyword in node.keywords:
            raise self.error("keyword arguments are not allowed", keyword.value)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error("starred expressions are not allowed", arg)
        handler: Callable[[ast.Call], _Value] = getattr(self, "call_" + func.id)
        return handler(node)

    def _arity(self, node: ast.Call, low: int, high: int | None = None) -> None:
        assert isinstance(node.func, ast.Name)
        n = len(node.args)
        high = low if high is None else high
        if n < low or n > high:
            if low == high:
                expected = f"{low} argument" + ("s" if low != 1 else "")
            else:
                expected = f"at least {low} arguments"
            raise self.error(f"{node.func.id}() takes {expected}, got {n}", node)

    def call_len(self, node: ast.Call) -> _Value:
        self._arity(node, 1)
        v = self.value(node.args[0])
        if v.type.kind not in ("str", "list", "set", "any"):
            raise self.error(
                f"len() needs a string or a list, but {self.quoted(node.args[0])} is {v.type}",
                node.args[0],
            )
        if v.type.nullable or v.type.kind == "any":
            return _Value(f"_rt_len({v.code})", INT)
        return _Value(f"_rt_blen({v.code})", INT)

    def call_abs(self, node: ast.Call) -> _Value:
        self._arity(node, 1)
        v = self._number(node.args[0], "abs()")
        return _Value(f"_rt_abs({v.code})", v.type)

    def _minmax(self, node: ast.Call, helper: str) -> _Value:
        self._arity(node, 2, MAX_COLLECTION_ITEMS)
        values = [self._number(arg, f"{helper[4:]}()") for arg in node.args]
        t = INT if all(v.type == INT for v in values) else NUMBER
        return _Value(f"{helper}({', '.join(v.code for v in values)})", t)

    def call_min(self, node: ast.Call) -> _Value:
        return self._minmax(node, "_rt_min")

    def call_max(self, node: ast.Call) -> _Value:
        return self._minmax(node, "_rt_max")

    def _string(self, node: ast.expr, what: str) -> _Value:
        v = self.value(node)
        if v.type.kind not in ("str", "any", "none"):
            raise self.error(f"{what} needs a string, but {self.quoted(node)} is {v.type}", node)
        return v

    def call_lower(self, node: ast.Call) -> _Value:
        self._arity(node, 1)
        v = self._string(node.args[0], "lower()")
        if v.type == STR:
            return _Value(f"{v.code}.lower()", STR, simple=v.simple)
        return _Value(f"_rt_lower({v.code})", optional(STR), simple=False)

    def call_upper(self, node: ast.Call) -> _Value:
        self._arity(node, 1)
        v = self._string(node.args[0], "upper()")
        if v.type == STR:
            return _Value(f"{v.code}.upper()", STR, simple=v.simple)
        return _Value(f"_rt_upper({v.code})", optional(STR), simple=False)

    def _affix(self, node: ast.Call, method: str) -> _Value:
        self._arity(node, 2)
        s = self._string(node.args[0], f"{method}()")
        p = self._string(node.args[1], f"{method}()")
        if s.type == STR and p.type == STR:
            return _Value(f"{s.code}.{method}({p.code})", BOOL)
        return _Value(f"_rt_{method}({s.code}, {p.code})", BOOL)

    def call_startswith(self, node: ast.Call) -> _Value:
        return self._affix(node, "startswith")

    def call_endswith(self, node: ast.Call) -> _Value:
        return self._affix(node, "endswith")

    def _has(self, node: ast.Call, which: str) -> _Value:
        self._arity(node, 2)
        collection = self.value(node.args[0])
        values = self.value(node.args[1])
        for v, n in ((collection, node.args[0]), (values, node.args[1])):
            if v.type.kind not in ("list", "set", "any"):
                raise self.error(f"has_{which}() needs lists, but {self.quoted(n)} is {v.type}", n)
        ce, ve = collection.type.elem, values.type.elem
        if ce is not None and ve is not None and not _comparable(ce, ve):
            raise self.error(f"cannot look for {ve} in {collection.type}", node.args[1])
        typed = collection.type.kind in ("list", "set") and not collection.type.nullable
        if values.literal is not None and typed:
            self.forget(values.code)
            frozen = frozenset(values.literal)
            items = ", ".join(
                f"_rt_D({str(i)!r})" if isinstance(i, Decimal) else repr(i) for i in values.literal
            )
            code = self.constant(frozen, f"_rt_fs(({items},))" if items else "_rt_fs()")
            if which == "any":
                return _Value(f"(not {code}.isdisjoint({collection.code}))", BOOL)
            return _Value(f"{code}.issubset({collection.code})", BOOL)
        return _Value(f"_rt_has_{which}({collection.code}, {values.code})", BOOL)

    def call_has_any(self, node: ast.Call) -> _Value:
        return self._has(node, "any")

    def call_has_all(self, node: ast.Call) -> _Value:
        return self._has(node, "all")

    def call_bucket(self, node: ast.Call) -> _Value:
        """``bucket(member.id, 'campaign:…')``: a stable 0..99 per value and salt (None
        for a missing value, so every comparison with it is false)."""
        self._arity(node, 2)
        value = self._string(node.args[0], "bucket()")
        salt = self._string(node.args[1], "bucket()")
        return _Value(f"_rt_bucket({value.code}, {salt.code})", optional(INT), simple=False)


_OP_TEXT: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}


def _comparable(a: Type, b: Type) -> bool:
    if a.kind == "any" or b.kind == "any":
        return True
    if a.numeric and b.numeric:
        return True
    if a.kind != b.kind:
        return False
    if a.kind in ("list", "set"):
        return a.elem is None or b.elem is None or _comparable(a.elem, b.elem)
    return True


def _join(a: Type, b: Type) -> Type | None:
    """The type of a value that is either ``a`` or ``b`` (``x if c else y``, list items)."""
    if a.kind == "none":
        return b.optional() if b.kind != "none" else NONE
    if b.kind == "none":
        return a.optional()
    nullable = a.nullable or b.nullable
    if a.kind == "any" or b.kind == "any":
        return ANY
    if a.numeric and b.numeric:
        kind = "int" if a.kind == b.kind == "int" else "number"
        return Type(kind, nullable)
    if a.kind != b.kind:
        return None
    if a.kind in ("list", "set"):
        if a.elem is None or b.elem is None:
            return Type(a.kind, nullable, a.elem or b.elem)
        elem = _join(a.elem, b.elem)
        if elem is None:
            return None
        return Type(a.kind, nullable, elem)
    return Type(a.kind, nullable)


def _compare_hint(t: Type) -> str:
    if t.kind == "any":
        return " (compare it, e.g. == True)"
    if t.kind == "str" or (t.kind == "none"):
        return " (compare it, e.g. == 'gold')"
    if t.numeric:
        return " (compare it, e.g. > 0)"
    return ""


def _did_you_mean(word: str, candidates: list[str], prefix: str = "") -> str:
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{matches[0]}'?)" if matches else ""


# --------------------------------------------------------------------------- entry points


def _parse(source: str) -> tuple[_Positions, ast.expr]:
    positions = _Positions(source)
    if len(source) > MAX_SOURCE_CHARS:
        raise positions.from_offset(
            f"expression too long: {len(source):,} characters (at most {MAX_SOURCE_CHARS:,})",
            MAX_SOURCE_CHARS,
        )
    if not source.strip():
        raise positions.from_offset("expression is empty", 0)
    for index, ch in enumerate(source):
        if ch == "\x00" or (ord(ch) < 32 and ch not in "\t\n\r"):
            raise positions.from_offset("control characters are not allowed", index)
    _scan_tokens(source, positions)
    wrapped = "(" + source + "\n)"
    try:
        tree = ast.parse(wrapped, mode="eval")
    except SyntaxError as exc:
        line = exc.lineno or 1
        column = max((exc.offset or 1) - 1, 0)
        if line == 1:
            column = max(column - 1, 0)
        offset = positions.char_offset(line, column)
        message = exc.msg
        if line > len(positions.starts) or offset >= len(source):
            message = "unexpected end of expression" if message == "invalid syntax" else message
        raise positions.from_offset(f"syntax error: {message}", offset) from None
    except (RecursionError, MemoryError):
        raise positions.from_offset("expression is nested too deeply", 0) from None
    except ValueError as exc:  # pragma: no cover - null bytes are refused above
        raise positions.from_offset(f"syntax error: {exc}", 0) from None
    _check_shape(tree.body, positions)
    return positions, tree.body


def _scan_tokens(source: str, positions: _Positions) -> None:
    """Bracket depth and identifier spelling, before the parser sees the text.

    Python's tokenizer normalises identifiers (NFKC): a full-width ``event``
    would silently become ``event``. Rules are read by people, so only ASCII identifiers
    are accepted."""
    depth = 0
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            line, column = token.start
            if token.type == tokenize.OP and token.string in "([{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise positions.from_offset(
                        f"expression is nested too deeply (at most {MAX_DEPTH} levels)",
                        positions.char_offset(line, column),
                    )
            elif token.type == tokenize.OP and token.string in ")]}":
                depth -= 1
                if depth < 0:
                    raise positions.from_offset(
                        f"syntax error: unmatched '{token.string}'",
                        positions.char_offset(line, column),
                    )
            elif token.type == tokenize.NAME and not token.string.isascii():
                raise positions.from_offset(
                    f"names must be plain ASCII letters, digits and '_': '{token.string}'",
                    positions.char_offset(line, column),
                )
            elif token.type == tokenize.ERRORTOKEN and not token.string.isspace():
                if not token.string.isascii():
                    raise positions.from_offset(
                        f"unexpected character '{token.string}'",
                        positions.char_offset(line, column),
                    )
    except (tokenize.TokenError, SyntaxError):
        return  # the parser reports these with a better message


def _check_shape(root: ast.expr, positions: _Positions) -> None:
    """Depth and size limits, iteratively (the checker after this is recursive)."""
    count = 0
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr):
            count += 1
            if count > MAX_NODES:
                raise positions.from_node(
                    f"expression is too complex (more than {MAX_NODES} parts)", node
                )
            if depth > MAX_DEPTH:
                raise positions.from_node(
                    f"expression is nested too deeply (at most {MAX_DEPTH} levels)", node
                )
        for child in ast.iter_child_nodes(node):
            stack.append((child, depth + 1 if isinstance(node, ast.expr) else depth))


def check(source: str, scope: Scope) -> Type:
    """Parse and type-check ``source``; return its type. Raises ``ExpressionError``."""
    positions, body = _parse(source)
    names = {root: root for root in scope.roots}
    return _Checker(positions, scope, names, None).value(body).type


def translate(
    source: str,
    scope: Scope,
    names: Mapping[str, str],
    *,
    constants: dict[str, object] | None = None,
    result: Type | None = BOOL,
) -> str:
    """Check ``source`` and return an equivalent Python expression over ``names``.

    ``names`` maps each scope root to the local variable that holds it in the
    generated code. With ``constants``, Decimal, date and collection literals are
    hoisted into that dict (names ``_k0``, ``_k1``, ... unique within the dict) and must
    be placed in the globals of the compiled code, which is how the engine inlines many
    conditions into one function; without it, they are built inline. The code refers to
    ``RUNTIME`` helpers; run it with ``runtime_globals(constants)``.

    ``result`` is the required type of the whole expression (bool for conditions), or
    None to accept any type.
    """
    positions, body = _parse(source)
    missing = [root for root in scope.roots if root not in names]
    if missing:
        raise ValueError(f"no variable name for {', '.join(missing)}")
    checker = _Checker(positions, scope, names, constants)
    value = checker.value(body)
    if result is not None and value.type != result:
        raise positions.from_node(
            f"condition must be {result}, but this is {value.type}" + _compare_hint(value.type),
            body,
        )
    return value.code


@dataclass(frozen=True)
class Condition:
    """A compiled condition. Call it with the scope's roots as keyword arguments:
    ``condition(event=..., member=...)``."""

    source: str
    python: str
    scope: Scope
    function: Callable[..., bool] = field(repr=False, compare=False)

    def __call__(self, **values: Any) -> bool:
        return self.function(**values)


def compile_condition(source: str, scope: Scope) -> Condition:
    """Check and compile a condition once; calling the result runs compiled code."""
    names = {root: root for root in scope.roots}
    constants: dict[str, object] = {}
    expression = translate(source, scope, names, constants=constants)
    python = f"def _condition({', '.join(names.values())}):\n    return {expression}\n"
    namespace = runtime_globals(constants)
    exec(compile(python, "<rule condition>", "exec"), namespace)
    function: Callable[..., bool] = namespace["_condition"]
    return Condition(source=source, python=python, scope=scope, function=function)
