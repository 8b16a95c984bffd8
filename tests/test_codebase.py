"""The package keeps its shape: small modules and functions, no upward imports, no cycles, ``__all__``
everywhere, and a light ``import emolib``."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "emolib"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
#: Argument-parser builders: one flag a line, long by nature.
LONG_FUNCTIONS_ALLOWED = {"emolib.cli.build_parser"}
HEAVY = ("numpy", "cv2", "onnxruntime", "tensorflow", "keras", "pretty_midi", "librosa", "pandas", "matplotlib")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "models" in path.relative_to(PACKAGE).parts:
            continue
        parts = ["emolib", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), str(MODULES[name]))


def _top_level_imports(name: str) -> set[str]:
    """emolib modules ``name`` imports at module level (not inside functions; not under TYPE_CHECKING)."""
    found: set[str] = set()
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)

    visit(_tree(name).body)
    return {m for m in found if m in MODULES and m != name}


def _all_imports(name: str) -> set[str]:
    """Every emolib module ``name`` imports anywhere (functions included)."""
    found: set[str] = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_the_package_has_the_modules_this_test_reads():
    assert {"emolib", "emolib.cli", "emolib.pipeline", "emolib.retrain", "emolib.retrain.gate"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_at_most_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines: split it by concern"


def _long_functions(name: str) -> list[str]:
    """Functions longer than MAX_FUNCTION_LINES, counted from the ``def`` to the end without the
    docstring (numpydoc Parameters/Returns sections are wanted, not a reason to split)."""
    long = []
    for node in ast.walk(_tree(name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            doc = node.body[0] if ast.get_docstring(node) is not None else None
            if doc is not None:
                n -= (doc.end_lineno or doc.lineno) - doc.lineno + 1
            if n > MAX_FUNCTION_LINES and f"{name}.{node.name}" not in LONG_FUNCTIONS_ALLOWED:
                long.append(f"{name}.{node.name} ({n} lines)")
    return long


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_are_at_most_60_lines(name):
    assert _long_functions(name) == []


def test_the_function_length_check_sees_long_functions(tmp_path, monkeypatch):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "fake.py"
    path.write_text(f'def f():\n    """A docstring\n    not counted."""\n{body}\n')
    monkeypatch.setitem(MODULES, "emolib.fake", path)
    assert _long_functions("emolib.fake") == [f"emolib.fake.f ({MAX_FUNCTION_LINES + 1} lines)"]


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"emolib.cli", "emolib.__main__"}))
def test_no_library_module_imports_the_cli(name):
    assert "emolib.cli" not in _all_imports(name), f"{name} imports emolib.cli: the CLI sits on top"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_module_level_imports_have_no_cycles():
    graph = {name: _top_level_imports(name) for name in MODULES}
    # a submodule's parent package is imported first; that edge is Python's, not ours
    graph = {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}
    assert "emolib.errors" in graph["emolib.pipeline"] and sum(map(len, graph.values())) > 20  # the graph is real
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_the_cycle_check_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _declared_all(name: str) -> list[str] | None:
    for node in _tree(name).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = node.value
            assert isinstance(value, (ast.List, ast.Tuple)), f"{name}: __all__ is not a literal list"
            return [e.value for e in value.elts if isinstance(e, ast.Constant)]
    return None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_declares_all_of_public_names(name):
    import importlib

    declared = _declared_all(name)
    assert declared is not None, f"{name} has no __all__"
    assert not [n for n in declared if n.startswith("_") and n != "__version__"], f"{name}: private names in __all__"
    assert len(declared) == len(set(declared)), f"{name}: __all__ repeats a name"
    if name != "emolib.__main__":
        module = importlib.import_module(name)
        assert [n for n in declared if not hasattr(module, n)] == [], f"{name}: __all__ names what it lacks"


def test_import_emolib_is_light_and_entry_points_are_lazy():
    code = ("import sys, emolib\n"
            f"heavy = {{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})\n"
            "assert not heavy, heavy\n"
            "assert {'image_to_music', 'load_face_model', 'load_generator', 'transcribe_tree', 'MusicApp'}"
            " <= set(dir(emolib))\n"
            "f = emolib.image_to_music\n"
            "from emolib.pipeline import image_to_music\n"
            "assert f is image_to_music\n"
            "emolib.load_face_model, emolib.load_generator, emolib.transcribe_file, emolib.transcribe_tree\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "try:\n    emolib.nonexistent\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit('no error')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
