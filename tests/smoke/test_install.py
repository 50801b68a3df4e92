"""components/ and scenarios/ install as l2rl.components and l2rl.scenarios, both ways.

Each check runs in a fresh interpreter that first drops any l2rl import hook already
installed in the test environment, so it sees only the install under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = {
    "l2rl": ROOT / "l2rl",
    "l2rl/components": ROOT / "components",
    "l2rl/scenarios": ROOT / "scenarios",
}

PROBE = """
import sys, site
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
for name in [m for m in sys.modules if m == "l2rl" or m.startswith("l2rl.")]:
    del sys.modules[name]
{setup}
import l2rl.components.replay.fifo, l2rl.scenarios.cartpole_variants
from l2rl import registry
print(l2rl.components.__file__)
print(l2rl.scenarios.cartpole_variants.__file__)
assert "fifo" in registry.available("l2rl.components"), registry.available("l2rl.components")
assert "cartpole-variants" in registry.available("l2rl.scenarios")
assert registry.load("l2rl.components", "fifo").__module__ == "l2rl.components.replay.fifo"
"""


def _pip(*args: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            # Without this, pip would first uninstall the test environment's own l2rl.
            "--ignore-installed",
            *args,
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


def _probe(setup: str, cwd: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(setup=setup)],
        check=True,
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    return out.stdout.split()


def _package_dirs() -> list[str]:
    """Installed-relative paths of every package folder in the source tree."""
    found = []
    for prefix, root in SOURCE_ROOTS.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.append(str(Path(prefix) / rel) if str(rel) != "." else prefix)
    return found


def test_regular_install_maps_components_and_scenarios(tmp_path: Path) -> None:
    target = tmp_path / "site"
    _pip("--target", str(target), ".")
    components, scenario = _probe(f"sys.path.insert(0, {str(target)!r})", cwd=tmp_path)
    assert Path(components) == target / "l2rl" / "components" / "__init__.py"
    assert Path(scenario).is_relative_to(target / "l2rl" / "scenarios")
    missing = [p for p in _package_dirs() if not (target / p / "__init__.py").is_file()]
    assert not missing, f"package folders left out of the install (pyproject packages): {missing}"


def test_editable_install_points_at_the_source_tree(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    _pip("--prefix", str(prefix), "-e", ".")
    (site_dir,) = prefix.glob("lib/python3*/site-packages")
    components, scenario = _probe(f"site.addsitedir({str(site_dir)!r})", cwd=tmp_path)
    assert Path(components) == ROOT / "components" / "__init__.py"
    assert Path(scenario) == ROOT / "scenarios" / "cartpole_variants.py"
