"""environment.yml cannot be solved here (no conda channel reachable); check it statically."""
import pathlib
import re
import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [x for d in env["dependencies"] if isinstance(d, dict) for x in d.get("pip", [])]
    return env, project, conda, pip


def test_python_pin_satisfies_requires_python():
    _, project, conda, _ = load()
    (py,) = [d for d in conda if re.match(r"python\b", d)]
    version = re.split(r"[=<>]+", py, maxsplit=1)[1]
    assert SpecifierSet(project["requires-python"]).contains(version + ".0")


def test_pip_section_installs_the_project_and_nothing_undeclared():
    env, project, conda, pip = load()
    assert env["channels"] == ["conda-forge"]
    assert any(re.fullmatch(r"(-e|--editable)\s+\.(\[[\w,-]+\])?", p.strip()) for p in pip), pip
    declared = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {canonicalize_name(Requirement(r).name) for r in extra}
    names = [re.split(r"[=<>!~ \[]", d, maxsplit=1)[0] for d in conda if d not in ("python", "pip")]
    names += [Requirement(p).name for p in pip if not p.startswith("-")]
    for n in names:
        if n in ("python", "pip"):
            continue
        assert canonicalize_name(n) in declared, f"{n} is in environment.yml but not in pyproject.toml"


def test_torch_spec_is_open_in_metadata_and_pinned_only_in_constraints():
    _, project, _, _ = load()
    (torch_req,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch"]
    assert "==" not in str(torch_req.specifier) and torch_req.specifier.contains("2.13.0")
    assert "torch==" in (ROOT / "ci" / "constraints.txt").read_text()
    for r in project["dependencies"]:
        assert "==" not in r, f"exact pin in package metadata: {r}"
