"""Refresh the README's screenshots in docs/screenshots/ (real Chromium, seeded demo team).

Runs tests/e2e/test_screenshots.py, which starts its own server and Llama API simulator, with
SCREENSHOTS_DIR pointing at docs/screenshots. Needs the dev extras and Chromium
(/usr/bin/chromium or $CHROMIUM):

    .venv/bin/python scripts/screenshots.py
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "screenshots"


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    # A failing run drops FAILED-*.png beside the screenshots; keep those out of the docs.
    env = {**os.environ, "SCREENSHOTS_DIR": str(TARGET), "BROWSER_SCREENSHOTS": ""}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/e2e/test_screenshots.py",
        "-p",
        "no:cacheprovider",
    ]
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit("Taking the screenshots failed; docs/screenshots/ may be partly updated.")
    for path in sorted(TARGET.glob("*.png")):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
