"""The package's layers point one way: nn <- _engine <- estimators <- the rest."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skmoe"

# What each layer may import, besides the standard library and its own modules.
ALLOWED = {
    "nn": {"torch"},
    "_engine": {"torch", "tqdm", "skmoe.nn"},
}
STDLIB = {
    "contextlib",
    "copy",
    "dataclasses",
    "fractions",
    "inspect",
    "collections",
    "itertools",
    "math",
    "os",
    "typing",
}


def imported_modules(path):
    tree = ast.parse(path.read_text())
    package = "skmoe." + ".".join(path.relative_to(PACKAGE).parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = (
                    package.rsplit(".", node.level - 1)[0]
                    if node.level > 1
                    else package
                )
                yield f"{base}.{node.module}" if node.module else base
            else:
                yield node.module


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_lies_below(layer):
    for path in (PACKAGE / layer).glob("*.py"):
        for name in imported_modules(path):
            top = name.split(".")[0]
            own = name.startswith(f"skmoe.{layer}")
            allowed = any(name == a or name.startswith(a + ".") for a in ALLOWED[layer])
            assert own or allowed or top in STDLIB, f"{path.name} imports {name}"
