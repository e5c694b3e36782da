"""Package layout (docs/architecture.md §1): lower stages never import higher ones; modules and functions stay short."""

from __future__ import annotations

import ast
from importlib.util import resolve_name
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "snn2chip").rglob("*.py"))

#: ``snn2chip.lava`` is the public face of ``backends.lava`` (it loads build folders through
#: ``compiler``): for users, never for the stages, which import ``backends.lava`` themselves
_ABOVE_CHIP = ("passes", "backends", "verify", "report", "convert", "compiler", "cli", "lava")
#: stage package -> the snn2chip packages and modules it must never import
FORBIDDEN = {
    "frontend": _ABOVE_CHIP,
    "chip": _ABOVE_CHIP,
    "passes": ("backends", "verify", "report", "compiler", "cli", "lava"),
    "backends": ("passes", "verify", "report", "compiler", "cli", "lava"),
    "convert": ("passes", "backends", "verify", "report", "compiler", "cli", "lava"),
    "verify": ("lava",),
    "importers": ("convert", "passes", "backends", "verify", "report", "compiler", "cli", "lava"),
}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
#: argparse declaration blocks: long, but flat
LONG_FUNCTIONS_ALLOWED = {"build_parser", "_add_compile_options"}


def dotted(path: Path) -> str:
    """The module name of a file under snn2chip/ (``snn2chip.chip.ir``; a package is its ``__init__``'s name)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported name) of every import in the file, at any depth; ``from a import b`` gives ``a.b``
    (b may be a module or a name in a), relative imports are made absolute."""
    package = dotted(path) if path.name == "__init__.py" else dotted(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = resolve_name("." * node.level + (node.module or ""), package)
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_lower_stages_never_import_higher_ones():
    violations = []
    for path in MODULES:
        stage = (dotted(path).split(".") + [""])[1]
        for line, name in imports(path):
            for higher in FORBIDDEN.get(stage, ()):
                target = f"snn2chip.{higher}"
                if name == target or name.startswith(target + "."):
                    violations.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({stage} must not import {higher})")
    assert not violations, "\n".join(["lower stages import higher ones:", *violations])


def test_modules_and_functions_stay_short():
    offenders = []
    for path in MODULES:
        text = path.read_text()
        where = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            offenders.append(f"{where}: {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in LONG_FUNCTIONS_ALLOWED:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{where}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not offenders, "\n".join(["too long:", *offenders])
