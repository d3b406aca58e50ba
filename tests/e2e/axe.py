"""axe-core (from npm, node_modules/axe-core) run inside the page under test.

The page's Content-Security-Policy allows no inline script, so contexts that run axe are made
with `bypass_csp=True`; the script is added from the file, never fetched from anywhere.
"""

from pathlib import Path

import pytest

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def axe_path() -> Path:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: run `npm ci` (make lint does)")
    return AXE


def violations(page) -> list[str]:
    """Every axe violation on the page as it is now, one line per rule and element."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(axe_path()))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            const why = (node) => node.failureSummary.split("\\n").slice(1).join("; ");
            return result.violations.flatMap((rule) =>
                rule.nodes.map((node) => `${rule.id}: ${node.target.join(" ")} (${why(node)})`)
            );
        }"""
    )
    return found
