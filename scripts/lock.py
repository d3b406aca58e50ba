"""Pin the whole dependency tree with hashes: requirements/<set>.txt for the base set and for
each extra of pyproject.toml (dev.txt holds the base set too).

    make lock           after editing pyproject.toml: adds and drops what changed, keeps every
                        other pin
    make lock-upgrade   the newest versions pyproject.toml allows
    make lock-check     fails when a lock file no longer matches pyproject.toml (CI runs it)
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = ROOT / "requirements"
UV = Path(sys.executable).with_name("uv")
# The image's Python; markers keep the files valid for newer ones and for other platforms.
PYTHON_VERSION = "3.11"


def lock_sets() -> dict[str, list[str]]:
    """Lock file name -> uv's arguments: "base" and one per optional-dependencies extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sets = {"base": []}
    for extra in project.get("optional-dependencies", {}):
        sets[extra] = ["--extra", extra]
    return sets


def compile_into(directory: Path, upgrade: bool = False) -> None:
    for name, extra in lock_sets().items():
        command = [
            str(UV),
            "pip",
            "compile",
            "pyproject.toml",
            *extra,
            "--generate-hashes",
            "--universal",
            "--python-version",
            PYTHON_VERSION,
            "--custom-compile-command",
            "make lock",
            "--quiet",
            "--output-file",
            str(directory / f"{name}.txt"),
        ]
        if upgrade:
            command.append("--upgrade")
        subprocess.run(command, cwd=ROOT, check=True)


def stale_files() -> list[Path]:
    return [path for path in LOCK_DIR.glob("*.txt") if path.stem not in lock_sets()]


def check() -> int:
    """Re-lock into a scratch copy (existing pins preferred) and compare with the files."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for path in LOCK_DIR.glob("*.txt"):
            shutil.copy(path, scratch / path.name)
        compile_into(scratch)
        differ = [
            name
            for name in lock_sets()
            if not (LOCK_DIR / f"{name}.txt").exists()
            or (LOCK_DIR / f"{name}.txt").read_bytes() != (scratch / f"{name}.txt").read_bytes()
        ]
    problems = [f"requirements/{name}.txt does not match pyproject.toml" for name in differ]
    for path in stale_files():
        problems.append(f"{path.relative_to(ROOT)} is for no extra in pyproject.toml")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("Run `make lock` and commit the requirements/ files.", file=sys.stderr)
        return 1
    print(f"requirements/ matches pyproject.toml ({', '.join(lock_sets())})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    parser.add_argument("--upgrade", action="store_true", help="take the newest versions")
    args = parser.parse_args()
    if args.check:
        return check()
    LOCK_DIR.mkdir(exist_ok=True)
    compile_into(LOCK_DIR, upgrade=args.upgrade)
    for path in stale_files():
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
