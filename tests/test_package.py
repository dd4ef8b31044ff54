"""`pip install .` gives an importable `tf_kd`, `nets` and `dataloader` and
the console entry points.

The interpreter that runs the tests (in a virtual environment or not) builds
the package as `pip install .` does, in isolation, and installs it without its
dependencies into a directory of its own (`pip install --target`); the sources
are copied to a temporary directory first so that the build leaves nothing in
the checkout. The checks run that interpreter with only that directory added
to its path (TensorFlow and the rest come from its environment), from a
directory outside both, so that only the installed copy can be imported.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["tf_kd", "nets", "dataloader"]
# everything a build reads: the metadata and the packages
SOURCES = ["pyproject.toml", "README.md", *PACKAGES]


def _run(args, cwd, site=None, timeout=120, returncodes=(0,)):
    """Run `args` with `site` as the only addition to the path."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    if site:
        env["PYTHONPATH"] = site
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode in returncodes, (
        f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`(python, bin directory, installed package directory, elsewhere)`."""
    base = tmp_path_factory.mktemp("package")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, source / name)
    site = base / "site"
    outside = base / "elsewhere"
    outside.mkdir()
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
          f"--target={site}", str(source)], cwd=outside, timeout=300)
    return sys.executable, str(site / "bin"), str(site), str(outside)


def test_packages_import_from_the_installed_copy(installed):
    python, _, site, outside = installed
    script = ("import importlib, os\n"
              f"for name in {PACKAGES!r} + ['tf_kd.losses', 'tf_kd.distillers', "
              "'tf_kd.keras_losses', 'tf_kd.cli']:\n"
              "    print(name, os.path.dirname(importlib.import_module(name).__file__))\n"
              "import tf_kd\n"
              "print('version', tf_kd.__version__)\n")
    lines = dict(line.split(" ", 1)
                 for line in _run([python, "-c", script], outside, site).splitlines())
    for name in PACKAGES:
        assert lines[name] == os.path.join(site, name)
    for name in ["tf_kd.losses", "tf_kd.distillers", "tf_kd.keras_losses", "tf_kd.cli"]:
        assert lines[name] == os.path.join(site, *name.split("."))
    import tf_kd
    assert lines["version"] == tf_kd.__version__


def test_every_subpackage_is_installed(installed):
    """Each source package directory of the checkout is in the installed copy."""
    _, _, site, _ = installed
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            if "__init__.py" not in files:
                continue
            relative = os.path.relpath(directory, ROOT)
            for name in files:
                if name.endswith(".py"):
                    assert os.path.isfile(os.path.join(site, relative, name)), (
                        f"{relative}/{name} is not installed")


def test_entry_points(installed):
    python, bin_dir, site, outside = installed
    for script in ["tf-kd-train", "tf-kd-test"]:
        assert os.path.isfile(os.path.join(bin_dir, script)), f"no {script} entry point"
    script = ("from importlib.metadata import entry_points\n"
              "for e in entry_points(group='console_scripts'):\n"
              "    if e.name.startswith('tf-kd-'): print(e.name, e.value)\n")
    found = dict(line.split() for line in _run([python, "-c", script], outside, site).splitlines())
    assert found == {"tf-kd-train": "tf_kd.cli.train:run", "tf-kd-test": "tf_kd.cli.evaluate:run"}
    for script in ("tf-kd-train", "tf-kd-test"):
        # absl's --help prints the usage and the program's flags, exits with status 1
        out = _run([os.path.join(bin_dir, script), "--help"], outside, site, returncodes=(0, 1))
        assert "--helpfull" in out and ("--Distillation" in out or "--model" in out), out


def test_the_keras_distillation_example_runs_on_the_installed_copy(installed):
    """docs/keras_distillation.md's example as written, with only the
    installed package importable (it writes its .keras files where it runs)."""
    from test_readme import code_blocks

    python, _, site, outside = installed
    (example,) = [text for language, text in code_blocks("docs/keras_distillation.md")
                  if language == "python"]
    out = _run([python, "-c", example], outside, site, timeout=600)
    assert "10 trainable variables of VID's regressor" in out, out
    assert os.path.isfile(os.path.join(outside, "student.keras"))
