"""The user's path: build the five wheels, install them into a fresh virtualenv, use them there.

The virtualenv gets torch and torchvision (and what they require) as hardlinked copies of the
files this interpreter's environment installed from constraints.txt: pip would re-extract
about 5 GB of CUDA wheels for minutes, and these are the very files it would write. Everything
else is installed by pip, from the built wheels, with the command a user types. The scripts
run from a folder outside the repository, without PYTHONPATH, and report where every module
came from: all of it must come from the new virtualenv.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "wheel_scripts"
LLAMA_KINDS = ["embeddings", "retrievers", "readers"]  # one distribution per namespace
PROJECTS = [
    ROOT,
    ROOT / "integrations" / "langchain",
    *(ROOT / "integrations" / "llama-index" / kind for kind in LLAMA_KINDS),
]
# What the README tells a user to install from the built wheels (plus mypy, for the types).
USER_INSTALL = [
    "clip-multimodal[datasets]",
    "langchain-clip-multimodal[chroma]",
    "llama-index-embeddings-clip-multimodal[chroma]",
    "llama-index-retrievers-clip-multimodal",
    "llama-index-readers-clip-multimodal",
    "mypy",
]
SOURCE_DIRS = [ROOT, *PROJECTS[1:], ROOT / "integrations" / "llama-index"]
DISTRIBUTIONS = [
    "clip-multimodal",
    "langchain-clip-multimodal",
    *(f"llama-index-{kind}-clip-multimodal" for kind in LLAMA_KINDS),
]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _user_env(venv: Path) -> dict[str, str]:
    """The environment of a shell where the user activated the new virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def _closure(names: Iterable[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions `names` need, themselves included (markers and extras applied)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(name, "") for name in names]
    while todo:
        name, extra = todo.pop()
        key = canonicalize_name(name)
        if (key, extra) in done:
            continue
        done.add((key, extra))
        dist = found.setdefault(key, importlib.metadata.distribution(name))
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                todo += [(requirement.name, e) for e in ("", *requirement.extras)]
    return list(found.values())


def _copy_installed(dists: Iterable[importlib.metadata.Distribution], site: Path) -> int:
    """Hardlink (or copy, across filesystems) the site-packages files of `dists` into `site`."""
    count = 0
    for dist in dists:
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if file.parts[0] == ".." or not source.is_file():  # console scripts, stale .pyc
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
            count += 1
    return count


def _venv_parent(tmp: Path) -> Path:
    """Where hardlinks from this environment work: the temp folder, else the ignored build/."""
    if os.stat(tmp).st_dev == os.stat(sys.prefix).st_dev:
        return tmp
    parent = ROOT / "build" / "wheel-test"
    shutil.rmtree(parent, ignore_errors=True)
    parent.mkdir(parents=True)
    return parent


class UserVenv:
    """A fresh virtualenv holding the installed wheels, and a work folder outside the repo."""

    def __init__(self, venv: Path, work: Path) -> None:
        self.venv, self.work = venv, work
        self.env = _user_env(venv)
        self.python = str(venv / "bin" / "python")

    def run(self, *args: str, timeout: float = 600) -> str:
        return _run(list(args), self.work, self.env, timeout)

    def script(self, name: str) -> dict[str, Any]:
        """Run a script from tests/wheel_scripts, copied into the work folder (not the repo)."""
        shutil.copy(SCRIPTS / name, self.work / name)
        out = self.run(self.python, name, str(self.work / Path(name).stem))
        return dict(json.loads(out.strip().splitlines()[-1]))


def _build_wheels(out: Path) -> None:
    for project in PROJECTS:
        _run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(project)],
            ROOT,
            {**os.environ},
        )


@pytest.fixture(scope="module")
def user_venv(tmp_path_factory: pytest.TempPathFactory) -> UserVenv:
    start = time.monotonic()
    wheels = tmp_path_factory.mktemp("dist")
    _build_wheels(wheels)
    built = time.monotonic()
    venv = _venv_parent(tmp_path_factory.mktemp("user")) / "venv"
    user = UserVenv(venv, tmp_path_factory.mktemp("work"))
    user.run(sys.executable, "-m", "venv", str(venv))
    site = user.run(user.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    copied = _copy_installed(_closure(["torch", "torchvision"]), Path(site.strip()))
    # --no-compile: byte-compiling ~130 packages the scripts mostly never import costs a minute.
    pip = [user.python, "-m", "pip", "install", "--no-compile", "-c", str(ROOT / "constraints.txt")]
    user.run(*pip, "--find-links", str(wheels), *USER_INSTALL, timeout=1200)
    user.run(user.python, "-m", "pip", "check")
    print(  # shown with -rA / -s: where the minutes go
        f"wheel test venv: built wheels {built - start:.0f}s, venv + torch ({copied} files) "
        f"+ pip install {time.monotonic() - built:.0f}s"
    )
    return user


def _assert_from_venv(result: dict[str, Any], venv: Path) -> None:
    for module, file in result["modules"].items():
        assert Path(file).resolve().is_relative_to(venv.resolve()), (module, file)
    for entry in result["sys_path"]:
        assert Path(entry or ".").resolve() not in SOURCE_DIRS, entry


def _assert_top_hits(result: dict[str, Any]) -> None:
    assert result["indexed"] == 48
    for query, expected in result["expected"].items():
        assert expected in result["hits"][query][0], (query, result["hits"][query])


def test_wheels_hold_the_packages_typed_and_licensed(user_venv: UserVenv) -> None:
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        f"for d in {DISTRIBUTIONS}:\n"
        "    dist = m.distribution(d)\n"
        "    out[d] = {'files': [str(f) for f in dist.files], 'meta': dict(dist.metadata.items()),\n"
        "              'requires': dist.requires}\n"
        "print(json.dumps(out))\n"
    )
    dists = json.loads(user_venv.run(user_venv.python, "-c", code))
    typed = {
        "clip-multimodal": ["clip_multimodal/py.typed"],
        "langchain-clip-multimodal": ["langchain_clip_multimodal/py.typed"],
        **{
            f"llama-index-{kind}-clip-multimodal": [f"llama_index/{kind}/clip_multimodal/py.typed"]
            for kind in LLAMA_KINDS
        },
    }
    for name, dist in dists.items():
        files = set(dist["files"])
        assert set(typed[name]) <= files, name
        assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files), name
        assert not any(f.startswith("llama_index/__init__") for f in files), name
        assert dist["meta"]["License-Expression"] == "MIT"
        assert "clip_multimodal/assets/animals/animals.npz" in files or name != "clip-multimodal"
        requirements = [Requirement(r) for r in dist["requires"] or []]
        unbounded = [r for r in requirements if not r.specifier and r.name != name]
        assert not unbounded, (name, unbounded)  # a lower bound on every dependency


def test_langchain_script(user_venv: UserVenv) -> None:
    result = user_venv.script("langchain_store.py")
    _assert_top_hits(result)
    _assert_from_venv(result, user_venv.venv)


def test_llamaindex_script(user_venv: UserVenv) -> None:
    result = user_venv.script("llamaindex_store.py")
    _assert_top_hits(result)
    _assert_from_venv(result, user_venv.venv)


def test_cli_demo(user_venv: UserVenv) -> None:
    out = user_venv.run("clip-multimodal", "demo", "--data-dir", str(user_venv.work / "demo"))
    blocks = out.split("text  ")[1:]
    assert len(blocks) == 10, out  # every query answered, in English and in Chinese
    for query, expected in [
        ("'a handwritten seven'", "digits/seven-"),
        ("'手写的数字七'", "digits/seven-"),
        ("'a silhouette of a cat'", "animals/cat-"),
        ("'一只猫的剪影'", "animals/cat-"),
    ]:
        block = next(b for b in blocks if b.startswith(query))
        assert expected in block.splitlines()[1], block
    assert "animal_mnist" not in user_venv.run(user_venv.python, "-m", "pip", "list")


SCRIPT_FILES = ("typed_user.py", "typed_user_wrong.py")


def test_mypy_strict_accepts_a_user_script(user_venv: UserVenv) -> None:
    """py.typed: mypy --strict sees the packages' types (and so catches a wrong one)."""
    for name in SCRIPT_FILES:
        shutil.copy(SCRIPTS / name, user_venv.work / name)
    # Skipping the heavy typed dependencies halves the time; our packages are still checked.
    (user_venv.work / "mypy.ini").write_text(
        "[mypy]\nstrict = True\n"
        "[mypy-torch.*,torchvision.*,chromadb.*,open_clip.*,transformers.*,onnxruntime.*]\n"
        "follow_imports = skip\n"
    )
    done = subprocess.run(
        [
            user_venv.python,
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--no-error-summary",
            *SCRIPT_FILES,
        ],
        cwd=user_venv.work,
        env=user_venv.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, done.stdout + done.stderr
    assert errors[0].startswith("typed_user_wrong.py:7: error: Incompatible types in assignment")


def _readme_clone_commands() -> list[list[str]]:
    """The README's `pip install .` lines (from a clone), as argument lists."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    install = text[text.index("## Install") : text.index("## Python")]
    lines = install.replace("\\\n", " ").splitlines()  # a trailing backslash continues the line
    commands = [shlex.split(line.split("#")[0]) for line in lines]
    return [c[2:] for c in commands if c[:2] == ["pip", "install"] and c[2:3] and c[2][0] == "."]


def _project_name(arg: str) -> str:
    """The distribution that a `pip install` argument such as `"./integrations/x[chroma]"` names."""
    pyproject = ROOT / arg.split("[")[0] / "pyproject.toml"
    return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"])


def test_readme_clone_commands_install(user_venv: UserVenv) -> None:
    """Each README line installs from the clone: pip finds clip-multimodal in the same command.

    It replaces the wheels' installs in the venv, so it runs last (the other tests would still
    pass: the packages stay in the venv, not in the source tree).
    """
    commands = _readme_clone_commands()
    assert len(commands) == 3, commands
    assert {_project_name(a) for c in commands for a in c} == set(DISTRIBUTIONS), commands
    pip = [user_venv.python, "-m", "pip"]
    for args in commands:
        user_venv.run(*pip, "uninstall", "-y", *DISTRIBUTIONS)
        _run([*pip, "install", "--no-compile", *args], ROOT, user_venv.env)
        listed = json.loads(user_venv.run(*pip, "list", "--format", "json"))
        wanted = {_project_name(a) for a in args}
        assert wanted <= {item["name"] for item in listed}, (args, listed)
