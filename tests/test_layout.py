"""The layout's rules: data flows from the library to the commands, and every file the code cites is here."""

from __future__ import annotations

import ast
import re

from conftest import REPO

# The modules run with `python -m`: they may import the library, never the other way round.
COMMANDS = {
    "vae.launch",  # the command's old name, kept one release
    "vae.train",
    "vae.evaluate",
    "vae.generate",
    "vae.explore",
    "vae.report",
    "vae.serve",
    "vae.export",
    "vae.weights",
    "vae.quality",
}
CITED_PATH = re.compile(r"\b((?:docs|experiments|vae|tests|conf)/[\w./-]*\.(?:md|py|yaml|json|png|csv))\b")


def library_modules() -> dict[str, object]:
    """Every module of vae/, subpackages included, by its dotted name (a package by its own: vae.likelihoods)."""
    modules = {}
    for path in sorted((REPO / "vae").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_library_module_imports_a_command_module():
    offenders = {}
    for module, path in library_modules().items():
        if module in COMMANDS:
            continue
        imported = imported_modules(path) & COMMANDS
        if imported:
            offenders[module] = sorted(imported)
    assert offenders == {}


def import_graph() -> dict[str, set[str]]:
    """vae's modules -> the vae modules each imports, anywhere in the file (deferred imports in functions count).

    A package's __init__ importing its own submodules does not count (a package gathers its modules), and
    vae/__init__.py is left out (it imports nothing of the library's)."""
    files = {module: path for module, path in library_modules().items() if module != "vae"}
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in imported_modules(path):
            while name not in files and "." in name:  # vae.config.ConfigError -> vae.config
                name = name.rsplit(".", 1)[0]
            own_submodule = path.name == "__init__.py" and name.startswith(module + ".")
            if name in files and name != module and not own_submodule:
                targets.add(name)
        graph[module] = targets
    return graph


def test_no_import_circle_in_vae_deferred_imports_included():
    graph = import_graph()
    assert graph["vae.train"] >= {"vae.trainer"}  # the graph sees imports (the command imports the loop)
    circles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other (one of them in a function) are found."""
    package = tmp_path / "vae"
    package.mkdir()
    (package / "a.py").write_text("from vae.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from vae.a import other\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    graph = import_graph()
    assert graph == {"vae.a": {"vae.b"}, "vae.b": {"vae.a"}}


def test_every_file_the_code_and_docs_cite_exists():
    sources = [*(REPO / "vae").rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "experiments").rglob("*.py")]
    sources += [*(REPO / "conf").rglob("*.yaml"), *(REPO / "docs").glob("*.md"), *(REPO / "experiments").rglob("*.md")]
    sources.append(REPO / "README.md")
    missing = []
    for source in sources:
        text = source.read_text()
        assert not re.search(r"(?<![\w/])DESIGN\.md", text), f"{source} cites the design outside docs/"
        missing += [
            f"{source.relative_to(REPO)} -> {cited}"
            for cited in CITED_PATH.findall(text)
            if not (REPO / cited).exists()
        ]
    assert missing == []


def test_every_conf_folder_is_a_listed_package_so_installing_warns_of_none():
    import tomllib

    packages = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    conf = REPO / "conf"
    folders = {"vae.conf." + ".".join(p.relative_to(conf).parts) for p in conf.rglob("*") if p.is_dir()}
    assert folders <= packages, sorted(folders - packages)
    assert {"vae", "vae.conf", "vae.static"} <= packages


def test_no_user_file_is_unpickled_without_a_restriction():
    """Every torch.load passes weights_only=True, every numpy load allow_pickle=False, and the only unpickler is
    CIFAR-10's restricted one (vae.data.load_cifar_batch): a file of the user's cannot run code."""
    offenders = []
    for path in [*(REPO / "vae").rglob("*.py"), *(REPO / "experiments").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if owner == "torch" and node.func.attr == "load" and keywords.get("weights_only") is not True:
                offenders.append(f"{where} torch.load without weights_only=True")
            if owner in ("np", "numpy") and node.func.attr == "load" and keywords.get("allow_pickle") is not False:
                offenders.append(f"{where} numpy.load without allow_pickle=False")
            if owner == "pickle" and node.func.attr in ("load", "loads", "Unpickler"):
                offenders.append(f"{where} pickle.{node.func.attr}")
    assert offenders == []


def test_every_test_the_readme_names_exists():
    """The README's reliability table names a test per row: each is a test function in that file."""
    named = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", (REPO / "README.md").read_text())
    assert len(named) >= 15
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not re.search(rf"^def {name}\(", (REPO / path).read_text(), flags=re.MULTILINE)
    ]
    assert missing == []


def test_the_command_s_old_module_name_still_imports_with_a_warning():
    import importlib
    import sys

    import pytest

    sys.modules.pop("vae.launch", None)
    with pytest.warns(DeprecationWarning, match="vae.launch moved to vae.train"):
        launch = importlib.import_module("vae.launch")
    from vae import train, trainer

    assert launch.resume_config is train.resume_config and train.train is trainer.train


def test_no_command_imports_another_command():
    """What two commands share (serve's and explore's latent views) lives in the library, not in one of them."""
    offenders = {}
    for module in sorted(COMMANDS - {"vae.launch"}):  # the old name re-exports the new one, on purpose
        imported = imported_modules(REPO / "vae" / f"{module.removeprefix('vae.')}.py") & (COMMANDS - {module})
        if imported:
            offenders[module] = sorted(imported)
    assert offenders == {}


def test_no_function_runs_over_60_lines_without_a_reason_stated_beside_it():
    """A function of more than 60 lines in vae/ has a `# long: <reason>` line just above it (or its decorators)."""
    unexplained = []
    for path in sorted((REPO / "vae").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if not lines[first - 2].strip().startswith("# long:"):
                    unexplained.append(
                        f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                    )
    assert unexplained == []
