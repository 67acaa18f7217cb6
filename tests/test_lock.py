"""The lock files cover pyproject.toml, agree with each other, and install with hashes.

`make install` and the Dockerfile install only what requirements*.lock pins, with
``--require-hashes``; a dependency added to pyproject.toml without `make lock` would be missing
from every install, so these checks fail until the lock is regenerated.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = [Requirement(line) for line in PYPROJECT["dependencies"]]
DEV = [Requirement(line) for line in PYPROJECT["optional-dependencies"]["dev"]]
LOCK = ROOT / "requirements.lock"  # runtime: the Dockerfile
DEV_LOCK = ROOT / "requirements-dev.lock"  # runtime + dev: make install, CI


def pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Each requirement of a lock file by normalised name: (its exact version, its hashes).
    Fails on an entry that is not a single ``==`` pin or comes without a hash, which
    ``pip install --require-hashes`` would refuse."""
    text = path.read_text(encoding="utf-8")
    entries = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        spec, *options = re.split(r"\s+--", entry)
        requirement = Requirement(spec)
        hashes = [o.removeprefix("hash=") for o in options if o.startswith("hash=sha256:")]
        specifiers = list(requirement.specifier)
        name = canonicalize_name(requirement.name)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}: {spec}"
        assert hashes, f"{path.name}: {name} has no --hash"
        assert name not in entries, f"{path.name}: {name} is pinned twice"
        entries[name] = (specifiers[0].version, hashes)
    return entries


def missing_or_stale(requirements: list[Requirement], lock: Path) -> list[str]:
    """The requirements the lock lacks, or pins at a version the requirement rules out."""
    locked = pins(lock)
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{requirement} does not allow {lock.name}'s {locked[name][0]}")
    return problems


@pytest.mark.parametrize(
    ("requirements", "lock"),
    [(RUNTIME, LOCK), (RUNTIME, DEV_LOCK), (DEV, DEV_LOCK)],
    ids=["runtime-in-lock", "runtime-in-dev-lock", "dev-in-dev-lock"],
)
def test_every_dependency_is_locked_at_an_allowed_version(
    requirements: list[Requirement], lock: Path
) -> None:
    """Each dependency of pyproject.toml is pinned in its lock, at a version it allows."""
    problems = missing_or_stale(requirements, lock)
    assert not problems, "run `make lock` and commit the lock files:\n" + "\n".join(problems)


def test_runtime_lock_matches_the_dev_lock() -> None:
    """The container runs exactly the versions the tests ran: every runtime pin is in the dev
    lock with the same version and hashes."""
    runtime, dev = pins(LOCK), pins(DEV_LOCK)
    differing = sorted(name for name, pin in runtime.items() if dev.get(name) != pin)
    assert not differing, f"run `make lock`: the two locks differ on {differing}"


def test_installs_use_the_locks_with_hashes() -> None:
    """The Makefile and the Dockerfile install the locked packages with --require-hashes and
    then the app alone with --no-deps, so pip never picks a version itself."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install --disable-pip-version-check --require-hashes -r $(DEV_LOCK)" in makefile
    assert re.search(r"^DEV_LOCK := requirements-dev\.lock$", makefile, re.M)
    assert re.search(r"pip install [^\n]*--no-deps -e \.$", makefile, re.M)
    assert re.search(r"^\$\(INSTALLED\): pyproject\.toml \$\(DEV_LOCK\)", makefile, re.M)
    assert "RUN pip install --require-hashes -r requirements.lock\n" in dockerfile
    assert "RUN pip install --no-deps .\n" in dockerfile
    assert not re.search(r"pip install (?!--require-hashes|--no-deps)", dockerfile)
