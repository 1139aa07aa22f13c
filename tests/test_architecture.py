"""DESIGN.md's layout, checked from the imports: the parts depend one way (import-linter's contracts
in pyproject.toml), exactly one module of the app names the sim, and no module imports itself
through others (counting imports inside functions, which is how the old cycles hid)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "bench", "coaching", "distill", "policy_client", "sim", "storage")


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint) if lint.exists() else "lint-imports"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def _graph() -> grimp.ImportGraph:
    # Imports only for type checkers never run, so they cannot make a cycle.
    return grimp.build_graph(*PACKAGES, include_external_packages=False, exclude_type_checking_imports=True,
                             cache_dir=None)


def test_no_module_imports_itself_through_others():
    graph = _graph()
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_one_module_of_the_app_names_the_sim():
    graph = _graph()
    naming = sorted(m for m in graph.find_children("app") | {"app"}
                    if any(i == "sim" or i.startswith("sim.") for i in graph.find_modules_directly_imported_by(m)))
    assert naming == ["app.embedded"]
