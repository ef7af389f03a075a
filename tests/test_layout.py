"""The suite is shaped like the code: ``tests/<feature>/`` mirrors ``src/treu/``, and no
module of the suite imports a test module — what two tests need is in
``tests/factories.py``, ``tests/support/``, ``tests/api_helpers.py`` or a fixture in
``conftest.py``. A test module imported by another drags its fixtures (and any test
imported by name) along and ties two features' tests together. Nor does a module read the
clock when it is imported: each test runs on the clock ``--clocks`` gave it, which starts
with the test, so a time taken at import belongs to the wrong clock. No database."""

from __future__ import annotations

import ast
from pathlib import Path

import treu

TESTS = Path(__file__).resolve().parent
SRC = Path(treu.__file__).resolve().parent
# Directories of the suite that are not features: shared helpers.
SUPPORT = {"support"}


def _is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def imported_test_modules(source: str, module: str) -> list[str]:
    """The test modules that ``source`` (the text of the module named ``module``, e.g.
    ``tests.rewards.test_coupons``) imports, relative imports resolved."""
    package = module.rsplit(".", 1)[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            if any(_is_test_module(part) for part in base.split(".")):
                found.append(base)
            # ``from tests.rewards import test_coupons``: the names may be modules.
            found += [f"{base}.{a.name}" for a in node.names if _is_test_module(a.name)]
    return found


def _modules() -> list[tuple[str, Path]]:
    root = TESTS.parent
    return [
        (".".join(path.relative_to(root).with_suffix("").parts), path)
        for path in sorted(TESTS.rglob("*.py"))
    ]


def test_no_module_of_the_suite_imports_a_test_module() -> None:
    offences = [
        f"{path.relative_to(TESTS.parent)} imports {imported}"
        for module, path in _modules()
        for imported in imported_test_modules(path.read_text(encoding="utf-8"), module)
    ]
    assert offences == [], "move what is shared to tests/factories.py or tests/support/"


def test_the_check_catches_every_spelling_of_a_test_import() -> None:
    here = "tests.rewards.test_wallet"
    for source in (
        "from tests.rewards.test_coupons import use",
        "import tests.ledger.test_concurrency",
        "from tests.rewards import test_coupons",
        "from . import test_coupons",
        "from .test_coupons import use",
        "from ..ledger.test_concurrency import in_parallel",
        "def test_x() -> None:\n    from tests.test_api import _assert_problem\n",
    ):
        assert imported_test_modules(source, here), source
    for source in (
        "from tests import factories as f",
        "from tests.support.concurrency import in_parallel",
        "from tests.api_helpers import Api",
        "from . import conftest",
        "from treu.rewards.service import catalogue",
    ):
        assert imported_test_modules(source, here) == [], source
    assert imported_test_modules("from .test_coupons import use", here) == [
        "tests.rewards.test_coupons"
    ]
    assert imported_test_modules("from ..ledger import test_jobs", here) == [
        "tests.ledger.test_jobs"
    ]


def test_feature_directories_mirror_the_source() -> None:
    """Every directory of tests is a package or module of ``src/treu`` (or support code);
    at the top level only the suite's own tests (clock, factories, this layout)."""
    for directory in sorted(p for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (
            directory.name in SUPPORT
            or (SRC / directory.name).is_dir()
            or (SRC / f"{directory.name}.py").is_file()
        ), f"tests/{directory.name}/ mirrors nothing in src/treu/"
        assert (directory / "__init__.py").is_file(), f"tests/{directory.name}/ needs __init__.py"
    top = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert top == ["test_clock.py", "test_factories.py", "test_layout.py"]


CLOCK_READS = {"utc_now", "now", "today", "utcnow", "time"}


def clock_reads_at_import(source: str) -> list[int]:
    """The lines where ``source`` reads the clock when it is imported: a module-level
    statement, a default argument or a decorator calling ``utc_now()``, ``datetime.now()``,
    ``date.today()`` or ``time.time()``. Such a time belongs to the real clock, while the
    test runs on the clock ``--clocks`` gave it (tests/clock.py)."""

    def name(func: ast.expr) -> str | None:
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            marker = isinstance(func.value, ast.Attribute) and func.value.attr == "mark"
            return None if marker else func.attr  # ``pytest.mark.now(...)`` reads nothing
        return None

    def reads(node: ast.AST) -> list[int]:
        return [
            call.lineno
            for call in ast.walk(node)
            if isinstance(call, ast.Call) and name(call.func) in CLOCK_READS
        ]

    found: list[int] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            at_definition: list[ast.AST] = list(node.decorator_list)
            if not isinstance(node, ast.ClassDef):
                at_definition += node.args.defaults
                at_definition += [d for d in node.args.kw_defaults if d is not None]
            for part in at_definition:
                found += reads(part)
        else:
            found += reads(node)
    return found


def test_no_module_of_the_suite_reads_the_clock_when_imported() -> None:
    offences = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for _, path in _modules()
        if path.name != "clock.py"  # the plugin notes when the session started
        for line in clock_reads_at_import(path.read_text(encoding="utf-8"))
    ]
    assert offences == [], "read the clock inside the test (or a fixture), not at import"


def test_the_clock_check_catches_reads_at_import_only() -> None:
    for source in (
        "T0 = utc_now() - timedelta(days=1)",
        "from datetime import date\nTODAY = date.today()",
        "def buy(at=datetime.now(UTC)) -> None: ...",
        "def buy(*, at=utc_now()) -> None: ...",
        "@pytest.mark.parametrize('at', [utc_now()])\ndef test_x(at): ...",
        "STAMP = int(time.time())",
    ):
        assert clock_reads_at_import(source), source
    for source in (
        "def test_x() -> None:\n    at = utc_now()",
        "@pytest.fixture\ndef t0():\n    return utc_now()",
        "T0 = datetime(2026, 11, 24, tzinfo=UTC)",
        "@pytest.mark.now('2027-03-10T21:00:00Z')\ndef test_x(): ...",
        "class A:\n    def f(self):\n        return date.today()",
    ):
        assert clock_reads_at_import(source) == [], source
