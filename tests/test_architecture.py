"""The package's shape: light imports, one method registry, the layer contracts, module sizes.

These tests hold the architecture described in ``docs/architecture.md`` in place: a change
that imports torch at plugin discovery, lets a low layer import a high one, reaches into
another package's private names or grows a module past the size limit fails here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_gplws

SRC = Path(napari_gplws.__file__).parent
ROOT = SRC.parents[1]
HEAVY = ("torch", "napari", "qtpy", "dask", "matplotlib", "zarr", "distributed")

#: Modules allowed over the 700-line limit, with the reason.
LONG_MODULES: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@pytest.mark.parametrize(
    "module", ["napari_gplws", "napari_gplws._reader", "napari_gplws.widgets", "napari_gplws.cli",
               "napari_gplws.dff", "napari_gplws.models", "napari_gplws.defocus", "napari_gplws.io"]
)
def test_import_is_light(module: str) -> None:
    code = (
        f"import sys, {module}; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module} pulled in {out.stdout.strip()}"


def test_root_functions_stay_functions_after_importing_every_module() -> None:
    # A submodule named like a root function (autofocus, batch) would replace it on import.
    for info in pkgutil.walk_packages([str(SRC)], prefix="napari_gplws."):
        if info.name.startswith(("napari_gplws.widgets", "napari_gplws.core.")) or info.name.endswith(
            "__main__"
        ):
            continue  # Qt; the deprecated paths warn on import; __main__ runs the CLI
        importlib.import_module(info.name)
    for name in ("autofocus", "batch", "reconstruct", "read_stack", "predict_defocus"):
        assert callable(getattr(napari_gplws, name)), name
    assert napari_gplws.autofocus.__module__.startswith("napari_gplws.defocus")
    assert napari_gplws.batch.__module__ == "napari_gplws.batching.run"


def test_one_method_registry() -> None:
    from napari_gplws import api
    from napari_gplws.dff import methods
    from napari_gplws.dff.measures import FOCUS_MEASURES

    assert set(methods.CLASSICAL_METHODS) == set(FOCUS_MEASURES)
    assert api.METHODS is methods.METHODS
    assert set(methods.METHOD_LABELS) == set(methods.METHODS)
    with pytest.raises(napari_gplws.errors.StackError, match="choose one of"):
        methods.resolve_method("nope")


def test_public_package_exports_resolve() -> None:
    for pkg in ("io", "dff", "defocus", "models", "annotate", "batching", "evaluation", "sim",
                "metrology", "training"):
        mod = importlib.import_module(f"napari_gplws.{pkg}")
        assert mod.__doc__ and mod.__doc__.strip(), pkg
        for name in getattr(mod, "__all__", []):
            assert getattr(mod, name) is not None, f"napari_gplws.{pkg}.{name}"


def test_every_module_says_what_it_is_for() -> None:
    missing = [str(p.relative_to(SRC)) for p in _modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing


def test_no_module_is_over_700_lines() -> None:
    too_long = {}
    for p in _modules():
        rel = str(p.relative_to(SRC))
        n = len(p.read_text().splitlines())
        if n > 700 and rel not in LONG_MODULES:
            too_long[rel] = n
    assert not too_long, too_long


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno


def test_no_private_names_across_packages() -> None:
    """``_name`` and ``_module`` may be used inside their first-level package only."""
    bad = []
    for p in _modules():
        here = _dotted(p).split(".")
        here_pkg = here[1] if len(here) > 1 else ""
        for module, names, line in _imports(p):
            parts = module.split(".")
            if parts[0] != "napari_gplws" or len(parts) < 2:
                continue
            there_pkg = parts[1]
            if there_pkg == here_pkg or here_pkg == "core":
                continue
            private_mod = any(x.startswith("_") for x in parts[2:]) or (
                there_pkg.startswith("_") and there_pkg != "_shared" and len(parts) > 2
            )
            private_name = [n for n in names if n.startswith("_") and n != "__version__"]
            if private_mod or private_name:
                bad.append(f"{p.relative_to(SRC)}:{line} {module} {private_name}")
    assert not bad, "\n".join(bad)


def test_argparse_only_in_cli() -> None:
    users = [
        str(p.relative_to(SRC)) for p in _modules()
        if any(m == "argparse" for m, _, _ in _imports(p))
        and p.relative_to(SRC).parts[0] not in ("cli", "core")
    ]
    assert not users, users


def test_product_text_names_no_work_items() -> None:
    """Docs, model cards, CLI text and comments speak about the product, not the tracker."""
    pattern = re.compile(r"\bissue[- ]?\d|\bissue'?s\b|\bthe issue\b|(quality|accuracy|speed)[ -]bar|\bbelow the bar\b|\bthe bar\b", re.I)
    files = [*_modules(), *(ROOT / "docs").glob("*.md"), ROOT / "README.md",
             *(SRC / "weights").glob("*.md"), *(SRC / "weights").glob("*.json")]
    hits = []
    for f in files:
        if not f.is_file():
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)


@pytest.mark.skipif(shutil.which("lint-imports") is None and not (Path(sys.executable).parent / "lint-imports").exists(),
                    reason="import-linter is not installed")
def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_old_import_paths_still_work_with_a_warning() -> None:
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    import napari_gplws.core.focus\nexcept DeprecationWarning as w:\n    print('warned', w)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "from napari_gplws.core.focus import depth_from_focus\n"
        "from napari_gplws.dff.classical import depth_from_focus as new\n"
        "print(depth_from_focus is new)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "warned napari_gplws.core.focus has moved to napari_gplws.dff.classical" in out.stdout
    assert out.stdout.strip().endswith("True")
