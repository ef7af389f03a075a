"""Attempts to escape the compiled expression language.

Every input here must be refused with an ``ExpressionError`` (never another exception,
never a hang) before any code is generated, compiled or run; the few harmless
look-alikes at the end must compile and stay harmless."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import treu.rules.expr as expr_module
from treu.rules.expr import ExpressionError, compile_condition, runtime_globals
from treu.rules.spec import LINE_SCOPE

ESCAPES = [
    "__import__('os')",
    "__import__('os').system('echo pwned')",
    "().__class__.__bases__",
    "().__class__.__bases__[0].__subclasses__()",
    "[].__class__",
    "''.__class__.__mro__",
    "line.__class__",
    "line.__class__ == 1",
    "line.sku.__class__",
    "event.__dict__",
    "event.attrs.__class__",
    "event.attrs.get('x') == 1",
    "event.attrs.keys()",
    "member.attrs['x'].__class__",
    "member.attrs['x'].__class__.__base__",
    "event.attrs['x']['y'] == 1",
    "getattr(line, '__class__')",
    "getattr(line, 'sku') == 'x'",
    "setattr(line, 'sku', 'x')",
    "open('x')",
    "open('/etc/passwd').read()",
    "lambda: 1",
    "(lambda x: x)(1) == 1",
    "[x for x in line.tags]",
    "{x for x in line.tags}",
    "{x: 1 for x in line.tags}",
    "any(x == 'a' for x in line.tags)",
    "f'{line.sku}' == 'x'",
    "f'{line.__class__}' == 'x'",
    "(x := 1) == 1",
    "9**9**9",
    "9**9**9 == 1",
    "event.total_minor ** 1000000 > 0",
    "'a'*10**9",
    "'a' * 1000000000 == 'a'",
    "line.sku * 1000000000 == 'a'",
    "[1]*10**9",
    "[1] * 1000000000 == [1]",
    "line.tags * 1000000000 == []",
    "line.tags + line.tags == []",
    "line.sku + 'x' == 'x'",
    "10**100 > 0",
    "9" * 1000 + " > 0",
    "1e308 > 0",
    "1e-30 > 0",
    "1000000000000001 > 0",
    "-1000000000000001 < 0",
    "((((" * 250 + "1" + "))))" * 250,
    "(" * 1000 + "1" + ")" * 1000,
    "(" * 900 + "1" + ")" * 900,
    "(" * 31 + "member.known" + ")" * 31,
    "[" * 40 + "]" * 40,
    "not " * 1000 + "member.known",
    "not " * 400 + "member.known",
    "not " * 31 + "member.known",
    "-" * 1999 + "1 > 0",
    "-" * 40 + "1 > 0",
    "member.known and " * 200 + "member.known",
    "x" * 100_000,
    "member.known or " + "event.total_minor > 1 or " * 4_000 + "True",
    "'" + "a" * 501 + "' == line.sku",
    "line.sku in [" + ", ".join(f"'{n}'" for n in range(201)) + "]",
    "\uff45vent.type == 'purchase'",  # full-width e: NFKC would turn it into 'event'
    "line.\uff53ku == 'x'",  # full-width s
    "line.__\uff43lass__ == 1",
    "\u0435vent.type == 'purchase'",  # Cyrillic e
    "even\u200dt.type == 'purchase'",  # zero-width joiner
    "event.type == 'a' \u2028 and True",  # line separator
    "print('x')",
    "print",
    "eval('1')",
    "exec('import os')",
    "globals()",
    "locals()",
    "vars(line)",
    "dir(line)",
    "compile('1', 'x', 'eval')",
    "breakpoint()",
    "input()",
    "type(line) == 1",
    "object.__subclasses__()",
    "__builtins__",
    "__builtins__['eval']('1')",
    "_rt_lt(1, 2)",
    "_rt_D('1') == 1",
    "_k0 == 1",
    "e.type == 'purchase'",  # the generated code's variable names
    "ln.sku == 'x'",
    "lines == 1",
    "line.sku[::-1] == 'x'",
    "line.tags[0] == 'x'",
    "line.sku.format(line) == 'x'",
    "'{0.__class__}'.format(line) == 'x'",
    "line.sku.lower() == 'x'",
    "min(*line.tags) == 1",
    "max(**{}) == 1",
    "len(line.tags, key=1) == 1",
    "(yield) == 1",
    "await line == 1",
    "1 if True else (yield)",
    "line.sku is line.sku",
    "line.sku == 'a'; import os",
    "line.sku == 'a'\nimport os",
    "import os",
    "1) or (__import__('os')",
    "1)) or ((__import__('os')",
    "member.known)\n(",
    "{'a': 1}['a'] == 1",
    "{**member.attrs} == 1",
    "...",
    "b'x' == b'x'",
    "1j == 1j",
    "event.type == 'a'\x00",
    "event.type == 'a' \x1b",
]


@pytest.fixture(autouse=True)
def _never_compile(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """If a refused expression reached code generation, the test fails."""
    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("an escape attempt reached compile()/exec()")

    monkeypatch.setattr(expr_module, "compile", refuse, raising=False)
    monkeypatch.setattr(expr_module, "exec", refuse, raising=False)
    yield
    assert calls == []


@pytest.mark.parametrize("source", ESCAPES, ids=lambda s: repr(s[:40]) + f"/{len(s)}")
def test_escape_attempts_are_refused(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as info:
        compile_condition(source, LINE_SCOPE)
    assert time.perf_counter() - started < 2
    error = info.value
    assert error.message
    assert 0 <= error.offset <= len(source)
    assert error.line >= 1
    assert error.column >= 1


def test_long_sources_are_refused_before_parsing() -> None:
    with pytest.raises(ExpressionError, match="expression too long: 100,000 characters") as info:
        compile_condition("x" * 100_000, LINE_SCOPE)
    assert info.value.offset == 2_000


def test_deep_nesting_is_reported_where_it_happens() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply") as info:
        compile_condition("(" * 900 + "1" + ")" * 900, LINE_SCOPE)
    assert info.value.offset == 30
    with pytest.raises(ExpressionError, match="nested too deeply") as info:
        compile_condition("not " * 400 + "member.known", LINE_SCOPE)
    assert info.value.offset == 4 * 30


def test_unicode_look_alikes_are_refused_with_a_reason() -> None:
    with pytest.raises(ExpressionError, match="names must be plain ASCII"):
        compile_condition("\uff45vent.type == 'purchase'", LINE_SCOPE)
    with pytest.raises(ExpressionError, match="names must be plain ASCII"):
        compile_condition("line.__\uff43lass__ == 1", LINE_SCOPE)


# --------------------------------------------------------------------------- harmless


@pytest.fixture
def sample() -> dict[str, Any]:
    line = SimpleNamespace(sku="4001", tags=("organic",), total_minor=100)
    event = SimpleNamespace(total_minor=100, attrs={"n": 3})
    member = SimpleNamespace(known=False, attrs={})
    return {"event": event, "member": member, "line": line}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # A dunder *key* is a dict lookup, not an attribute: it finds nothing.
        ("event.attrs['__class__'] == None", True),
        ("member.attrs['__globals__'] == None", True),
        # Brackets and dunders inside a string are just text.
        ("line.sku != '((((((((((((((((((((((((((((((((((((__import__'", True),
        ("'__class__' in line.tags", False),
        # Division by zero and big products do not crash or hang.
        ("event.total_minor / 0 == 0", True),
        ("event.total_minor // 0 == 0 and event.total_minor % 0 == 0", True),
        ("event.total_minor" + " * 1000000000000000" * 25 + " > 0", True),
        ("event.total_minor" + " * 999999999999999.5" * 25 + " > 0", True),
        # Comments and line continuations are layout.
        ("member.known # always false for an anonymous cart", False),
        ("line.sku == '4001' \\\n and True", True),
    ],
)
def test_harmless_look_alikes(
    source: str, expected: bool, sample: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # these are meant to compile
    condition = compile_condition(source, LINE_SCOPE)
    started = time.perf_counter()
    assert condition(**sample) is expected
    assert time.perf_counter() - started < 1


def test_generated_code_has_no_builtins() -> None:
    namespace = runtime_globals()
    assert namespace["__builtins__"] == {}
    for name in ("open", "__import__", "getattr", "eval", "exec", "print", "type"):
        with pytest.raises(NameError):
            eval(name, namespace)
