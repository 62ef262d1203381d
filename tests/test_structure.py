"""The shape of web/, read from its source with ast (nothing is imported or run): no module over
400 lines, no import cycle among its modules, role sets named only in web/access.py, and the
settings fetched from the global only where the app, the CLI or the scheduler is put together.

An import counts wherever it is written (a function-local import makes the same dependency, only
later), and so does one under ``if TYPE_CHECKING``. ``from pkg import name`` depends on the module
``pkg.name`` when there is one, else on ``pkg``; the implicit import of a parent package is not
counted (a package's ``__init__`` importing its own modules is not a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

from stock.models import ROLES

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
MAX_LINES = 400

SETTINGS_ROOTS = {
    "web/app.py",  # create_app(): the app factory, when not handed its settings
    "web/cli/main.py",  # the `dawa` callback: read once per command, handed on through the click context
}
"""Where ``get_settings`` (the process-wide settings) may be named: the composition roots. Pages and
the API read ``request.app.state.settings``; services take settings as a parameter."""

ROLE_SETS_HOME = "web/access.py"


def _modules(root: Path = WEB) -> dict[str, Path]:
    """Dotted module name -> file, for every Python file under ``root`` (a package's is its __init__)."""
    base = root.parent
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of other modules in ``modules``, from every import statement in it."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[:len(package) - (node.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                wanted = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                          for alias in node.names]
            else:
                continue
            for target in wanted:
                while target and target not in modules:  # `import web.x.y` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each is at least one import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; web/ is far too shallow for the recursion limit
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def role_literals(path: Path) -> list[str]:
    """Tuple, list or set literals made only of role names, as 'line: literal'."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
                isinstance(e, ast.Constant) and e.value in ROLES for e in node.elts):
            out.append(f"{node.lineno}: {ast.unparse(node)}")
    return out


def names_get_settings(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Name) and node.id == "get_settings":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "get_settings":
            return True
        if isinstance(node, ast.ImportFrom) and any(a.name == "get_settings" for a in node.names):
            return True
    return False


# --- web/ as it is ------------------------------------------------------------------------------

def test_no_module_in_web_is_over_400_lines():
    long = {_rel(p): n for p in WEB.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these (lines): {long}"


def test_no_import_cycle_among_web_modules():
    graph = import_graph(_modules())
    assert {"web.api", "web.flags.pages", "web.errors"} <= graph["web.app"]  # the imports were read
    assert cycles(graph) == []


def test_role_sets_are_named_only_in_web_access():
    found = [f"{_rel(p)}:{hit}" for p in sorted(WEB.rglob("*.py")) if _rel(p) != ROLE_SETS_HOME
             for hit in role_literals(p)]
    assert found == [], "name the set in web/access.py and import it:\n" + "\n".join(found)
    assert role_literals(WEB / "access.py"), "web/access.py should hold the role sets"


def test_settings_are_fetched_only_where_the_app_and_the_cli_are_put_together():
    fetching = {_rel(p) for p in WEB.rglob("*.py") if names_get_settings(p)}
    assert fetching - SETTINGS_ROOTS == set()
    assert SETTINGS_ROOTS <= fetching  # the roots are where they are said to be


def test_the_dawa_script_names_the_cli_app():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dawa = "web.cli.main:app"' in text
    tree = ast.parse((WEB / "cli" / "main.py").read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "app" for t in n.targets)
               for n in tree.body)


# --- the checks themselves, on a small package made for them ----------------------------------

def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return _modules(root)


def test_a_cycle_through_a_function_local_import_is_found(tmp_path):
    modules = _package(tmp_path, {
        "__init__.py": "",
        "app.py": "from pkg.api import routes\n",
        "api/__init__.py": "",
        "api/routes.py": "def handler():\n    from pkg import app\n    return app\n",
        "other.py": "from . import app\n",
    })
    graph = import_graph(modules)
    assert graph["pkg.api.routes"] == {"pkg.app"} and graph["pkg.other"] == {"pkg.app"}
    assert cycles(graph) == [["pkg.api.routes", "pkg.app"]]


def test_no_cycle_when_shared_pieces_sit_below(tmp_path):
    modules = _package(tmp_path, {
        "__init__.py": "",
        "errors.py": "STATUS = {}\n",
        "app.py": "from pkg.errors import STATUS\nfrom pkg.api import routes\n",
        "api/__init__.py": "from pkg.api import routes\n",
        "api/routes.py": "from ..errors import STATUS\n",
    })
    assert cycles(import_graph(modules)) == []


def test_role_literals_and_settings_fetches_are_seen(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('WATCH = ("admin", "auditor")\nOTHER = ("admin", "x")\n'
                    "def f():\n    from stock.settings import get_settings\n    return get_settings()\n",
                    encoding="utf-8")
    assert role_literals(path) == ["1: ('admin', 'auditor')"]
    assert names_get_settings(path)
    path.write_text("settings = request.app.state.settings\n", encoding="utf-8")
    assert not names_get_settings(path)
