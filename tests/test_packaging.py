"""``pip install .`` (not editable): the wheel builds without warnings, carries the prompts and
the bundled resources, and answers a question once installed into a fresh environment.

Offline: the wheel is built with the setuptools of this environment, and the fresh
environment borrows this one's installed dependencies through a ``.pth`` file, but imports
``assistant`` from the wheel alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ARTICLE, ROOT

pytestmark = pytest.mark.slow

# What a build reads: the package, the top-level prompts, the metadata and its readme.
SOURCES = ("pyproject.toml", "README.md", "assistant", "prompts")


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _clean_env() -> dict[str, str]:
    """This environment without anything that would put the source tree on sys.path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASSISTANT_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
            "PYTHONNOUSERSITE": "1"}


def _build(hooks: str, src: Path) -> str:
    """Run setuptools' build hooks in ``src``; everything they printed."""
    done = _run(sys.executable, "-W", "always", "-c",
                f"from setuptools import build_meta as b; {hooks}", cwd=src, env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel ``pip install .`` builds, from a copy of the sources (a build writes
    ``build/`` and ``*.egg-info`` beside them), and everything the builds printed (this
    wheel's, and the sdist's and its wheel's, as ``python -m build`` makes them)."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist, from_sdist = root / "dist", root / "from-sdist"
    output = _build(f"b.build_wheel({str(dist)!r}); b.build_sdist({str(dist)!r})", src)
    with tarfile.open(next(dist.glob("assistant-*.tar.gz"))) as sdist:
        sdist.extractall(root / "sdist", filter="data")
    unpacked = next((root / "sdist").iterdir())
    output += _build(f"b.build_wheel({str(from_sdist)!r})", unpacked)
    wheel = next(dist.glob("assistant-*.whl"))
    files = set(zipfile.ZipFile(wheel).namelist())
    assert set(zipfile.ZipFile(next(from_sdist.glob("*.whl"))).namelist()) == files
    return wheel, output


def test_the_build_prints_no_warnings(built: tuple[Path, str]) -> None:
    _, output = built
    warnings = [line for line in output.splitlines() if "warn" in line.lower()]
    assert warnings == [], "\n".join(warnings)


def test_the_wheel_carries_the_prompts_and_the_resources(built: tuple[Path, str]) -> None:
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    for prompt in (ROOT / "prompts").iterdir():
        assert f"assistant/prompts/{prompt.name}" in names
    for resource in (ROOT / "assistant" / "resources").iterdir():
        assert f"assistant/resources/{resource.name}" in names
    assert "assistant/web/static/page.css" in names  # the chat page's style sheet
    assert not any(n.startswith("prompts/") for n in names)  # nothing outside the package


def test_an_installed_wheel_answers_with_its_own_prompts(built: tuple[Path, str],
                                                         tmp_path: Path) -> None:
    wheel, _ = built
    venv = tmp_path / "venv"
    done = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                     cwd=tmp_path).stdout.strip())
    # The dependencies of this environment, after the fresh one's own site-packages.
    (site / "_borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                "--no-build-isolation", "--no-index", "--quiet", wheel, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    env = _clean_env()
    where = _run(python, "-c", "import assistant, assistant.settings as s; "
                 "print(assistant.__file__); print(s.default_prompts_dir())",
                 cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    module, prompts = (Path(line) for line in where.stdout.splitlines())
    assert module == site / "assistant" / "__init__.py"  # from the wheel, not the source tree
    assert prompts == site / "assistant" / "prompts"
    # The chat page reads its style sheet from the installed package.
    css = _run(python, "-c", "import assistant.web as w; print(w.CSS_FILE); "
               "print(len(w.CSS))", cwd=tmp_path, env=env)
    assert css.returncode == 0, css.stderr
    css_file, css_chars = css.stdout.split()
    assert Path(css_file) == site / "assistant" / "web" / "static" / "page.css"
    page_css = (ROOT / "assistant" / "web" / "static" / "page.css").read_text(encoding="utf-8")
    assert Path(css_file).read_text(encoding="utf-8") == page_css
    assert int(css_chars) == len(page_css) > 0

    loaded = _run(python, "-c", "from assistant.llm import load_prompt; "
                  "from assistant.settings import Settings; "
                  "print(load_prompt(Settings(), 'answer_system.txt'), end='')",
                  cwd=tmp_path, env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == (ROOT / "prompts" / "answer_system.txt").read_text().strip()
    # A user's prompts folder that lacks a template falls back to the shipped one.
    (tmp_path / "my-prompts").mkdir()
    partial = _run(python, "-c", "from assistant.llm import load_prompt; "
                   "from assistant.settings import Settings; "
                   "print(load_prompt(Settings(), 'answer_system.txt'), end='')",
                   cwd=tmp_path, env={**env, "ASSISTANT_PROMPTS_DIR": str(tmp_path / "my-prompts")})
    assert partial.returncode == 0, partial.stderr
    assert partial.stdout == loaded.stdout

    assistant = venv / "bin" / "assistant"
    version = _run(assistant, "--version", cwd=tmp_path, env=env)
    assert version.stdout.startswith("assistant ") and version.returncode == 0

    (tmp_path / "corpus").mkdir()
    shutil.copy(ARTICLE, tmp_path / "corpus" / ARTICLE.name)
    done = _run(assistant, "ingest", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    done = _run(assistant, "ask", "How many children were reunited in the past 24 hours?",
                cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "Eight children have been rejoined" in done.stdout
    assert f"[1] {ARTICLE.name}" in done.stdout
