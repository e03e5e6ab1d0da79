"""The layout's rules: data flows from the library to the commands, and every file the code cites is here."""

from __future__ import annotations

import ast
import re

from conftest import REPO

# The modules run with `python -m`: they may import the library, never the other way round.
COMMANDS = {
    "vae.launch",
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
    for path in sorted((REPO / "vae").glob("*.py")):
        module = f"vae.{path.stem}"
        if module in COMMANDS:
            continue
        imported = imported_modules(path) & COMMANDS
        if imported:
            offenders[module] = sorted(imported)
    assert offenders == {}


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
