"""The package's shape: floors in data-flow order, no import circle, small modules, documented
packages, and commands that need no torch start without importing it."""

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "featpipe"
# Lower floors never import upper ones (data flows upwards through this list).
FLOORS = [
    {"featpipe", "errors", "spec", "fileio", "provenance", "params", "resources"},
    {"data"},
    {"models"},
    {"store"},
    {"extract"},
    {"classical"},
    {"scale"},
    {"report"},
    {"curriculum"},
    {"finetuning"},
    {"workflows"},
    {"cli", "demo", "__main__"},
]
MAX_CODE_LINES = 400


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(tree, top_level_only=False):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("featpipe"):
            yield node.module
            for alias in node.names:  # `from featpipe.models import embedded` (a submodule)
                yield f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("featpipe"))


def _floor(module: str) -> int:
    """The floor of a featpipe module; names imported from the root package are floor 0."""
    name = module.split(".")[1] if "." in module else "featpipe"
    top_level = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    if name not in top_level:
        return 0
    floors = [i for i, floor in enumerate(FLOORS) if name in floor]
    assert floors, f"featpipe.{name} has no floor in FLOORS"
    return floors[0]


def test_lower_floors_never_import_upper_ones():
    wrong = []
    for module, path in _modules():
        for imported in _imports(ast.parse(path.read_text())):
            if imported.split(".")[1:2] and _floor(imported) > _floor(module):
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_no_import_circle_between_modules():
    known = dict(_modules())
    graph = defaultdict(set)
    for module, path in known.items():
        for imported in _imports(ast.parse(path.read_text()), top_level_only=True):
            if imported in known and imported != module:
                graph[module].add(imported)

    def reaches(start, target, seen):
        for nxt in graph[start]:
            if nxt == target or (nxt not in seen and not seen.add(nxt) and
                                 reaches(nxt, target, seen)):
                return True
        return False

    # a package __init__ importing its own submodules is how packages work, not a circle
    circles = [m for m in known if reaches(m, m, set())
               and not all(n.startswith(m + ".") for n in graph[m])]
    assert circles == []


def _code_lines(source: str) -> int:
    tree = ast.parse(source)
    docs = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and i not in docs)


def test_no_module_above_400_lines_of_code():
    large = {m: n for m, p in _modules() if (n := _code_lines(p.read_text())) > MAX_CODE_LINES}
    assert large == {}


def test_every_package_says_what_it_is_for_in_two_lines():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and 1 <= len(doc.strip().splitlines()) <= 2, init


LEGACY_STORE = str(PACKAGE.parent / "tests" / "data" / "legacy" / "legacy-store.h5")


@pytest.mark.parametrize("argv", [["--help"], ["recipes"], ["info", LEGACY_STORE]])
def test_commands_that_need_no_torch_do_not_import_it(argv):
    """--help, recipes and info start in well under a second: no torch, no scikit-learn."""
    code = ("import sys\nfrom featpipe.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules]\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("recipe", ["fne", "l2", "pca-svm"])
def test_a_cpu_fit_does_not_import_torch(recipe, tmp_path):
    """The L-BFGS classifiers solve NumPy input with NumPy: a fit pays neither torch's import
    nor the ~25 MiB of its library that its first operations page in."""
    code = ("import sys\nfrom featpipe.cli import main\n"
            "assert main(sys.argv[1:]) == 0\n"
            "assert 'torch' not in sys.modules")
    argv = ["fit", LEGACY_STORE, "--recipe", recipe, "--cv", "2", "--out",
            str(tmp_path / "model.skops"), "--report", str(tmp_path / "report")]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
