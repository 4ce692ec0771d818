"""The runtime stays readable: no class over about 200 lines or function over about 50, imports that
go one way (from the CLI down to onnxruntime, never back up), and a variant looked up once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

RUNTIME = REPO / "runtime"
MAX_CLASS_LINES, MAX_FUNCTION_LINES = 200, 50
# Each runtime module may import only modules of lower layers (images and colour import each other).
LAYERS = [
    {"errors", "limits", "contract", "arrays", "atomic", "scores", "progress"},
    {"devices", "layout", "noise", "manifest", "likelihood"},
    {"inputs", "files", "sessions", "images", "colour", "mixture", "prior", "score_stats"},
    {"model", "bound"},  # a verified model and its sessions, ready; device-resident runs
    {"core"},  # ... owned by the VAE's first layer
    {"operations"},
    {"estimates"},
    {"scoring"},
    {"vae"},
    {"selftest"},
    {"cli", "raydata", "__init__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
SAME_LAYER_PAIRS = {frozenset({"images", "colour"})}


def sizes() -> list[tuple[str, str, int]]:
    """(kind, file:name, lines) of every class and function in runtime/."""
    found = []
    for path in sorted(RUNTIME.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                found.append((kind, f"{path.name}:{node.name}", node.end_lineno - node.lineno + 1))  # type: ignore[operator]
    return found


def test_no_class_or_function_is_too_long() -> None:
    too_long = [
        f"{name} ({lines} lines)"
        for kind, name, lines in sizes()
        if lines > (MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES)
    ]
    assert not too_long, f"over {MAX_CLASS_LINES} lines a class or {MAX_FUNCTION_LINES} a function: {too_long}"


def runtime_imports(path: Path) -> set[str]:
    """The runtime modules `path` imports (relative imports), wherever the import statement sits."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(a.name for a in node.names if (RUNTIME / f"{a.name}.py").exists())
    return names


def test_every_runtime_module_has_a_layer() -> None:
    assert {p.stem for p in RUNTIME.glob("*.py")} == set(LEVEL)


@pytest.mark.parametrize("module", sorted(LEVEL))
def test_imports_go_one_way(module: str) -> None:
    upward = [
        other
        for other in runtime_imports(RUNTIME / f"{module}.py")
        if LEVEL[other] >= LEVEL[module] and frozenset({module, other}) not in SAME_LAYER_PAIRS and other != module
    ]
    assert not upward, f"runtime/{module}.py imports {upward}, which are not below it: {LAYERS}"


def test_a_variant_is_a_typed_value_looked_up_in_one_place() -> None:
    from edgevae.runtime import VAE, contract

    vae = VAE(device="cpu", variant="int8")
    assert vae.files.spec is contract.VARIANTS["int8"] and vae.files.variant == "int8"
    lookups = [
        f"{path.name}:{node.lineno}"
        for path in sorted(RUNTIME.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Subscript) and getattr(node.value, "attr", getattr(node.value, "id", "")) == "VARIANTS"
    ]
    assert [where.split(":")[0] for where in lookups] == ["files.py"], lookups
