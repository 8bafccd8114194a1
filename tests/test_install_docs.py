"""The README's install and test commands say what a new user needs and stay what CI
runs."""

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, which pytest itself requires below Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def _section(title):
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_torch_is_a_plain_lower_bound():
    torch_req = [
        d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")
    ]
    assert len(torch_req) == 1 and re.fullmatch(r"torch>=[\d.]+", torch_req[0])


def test_user_install_pins_no_torch_and_explains_the_cpu_index():
    install = _section("Install")
    commands = _bash_blocks(install)
    assert "venv" in commands[0]  # a fresh virtual environment first
    for command in commands:
        assert "torch==" not in command
    assert any(CPU_INDEX in c and c.startswith("pip install torch") for c in commands)
    assert "CPU" in install and "CUDA" in install


def _installs_skmoe(command):
    return re.search(r"pip install (-e )?[\"']?\.(\[|[\"' ]|$)", command) is not None


def test_install_steps_come_in_the_order_a_reader_runs_them():
    """The CPU-only torch comes before the line that would pull the CUDA build, and
    installing comes before the first code that needs it."""
    assert README.index("## Install") < README.index("## Quickstart")
    commands = _bash_blocks(_section("Install"))
    cpu_torch = next(i for i, c in enumerate(commands) if CPU_INDEX in c)
    first_skmoe = next(i for i, c in enumerate(commands) if _installs_skmoe(c))
    assert cpu_torch < first_skmoe, commands


def test_the_quickstart_imports_what_the_install_line_before_it_installs():
    from importlib.metadata import packages_distributions

    commands = _bash_blocks(_section("Install"))
    (line,) = [c for c in commands if _installs_skmoe(c)][:1]
    extras = re.search(r"\.\[([\w,]+)\]", line)
    wanted = list(PYPROJECT["project"]["dependencies"])
    for extra in extras.group(1).split(",") if extras else []:
        wanted += PYPROJECT["project"]["optional-dependencies"][extra]
    installed = {re.match(r"[\w.-]+", req).group().lower() for req in wanted}
    installed.add("skmoe")
    (code,) = re.findall(r"```python\n(.*?)```", _section("Quickstart"), re.S)
    modules = set(re.findall(r"^(?:from|import) (\w+)", code, re.M))
    distributions = packages_distributions()
    for module in modules - set(sys.stdlib_module_names):
        names = {d.lower() for d in distributions.get(module, [module])}
        assert names & installed, f"the Quickstart imports {module}: {line!r}"


def test_readme_names_the_supported_python_versions():
    install = _section("Install")
    classifiers = PYPROJECT["project"]["classifiers"]
    versions = [
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions
    assert PYPROJECT["project"]["requires-python"] == f">={versions[0]}"
    for version in versions:
        assert version in install


def test_ci_runs_the_readme_test_command_without_the_cpu_index():
    section = _section("Run the tests")
    (command,) = _bash_blocks(section)
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines()
    assert "download.pytorch.org" not in command + ci
    assert "CI" in section and "torch 2.13.0" in section  # which environment it expects


def test_test_command_ends_with_a_short_summary(tmp_path):
    """pytest with the project's options lists failures, not every expected failure's
    reason, at the end of its output."""
    import subprocess
    import sys

    reason = "a long explanation " * 50
    (tmp_path / "pyproject.toml").write_text(
        (ROOT / "pyproject.toml").read_text().replace('"tests", "skmoe"', '"."')
    )
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        f"@pytest.mark.xfail(reason={reason!r}, strict=True)\n"
        "def test_expected():\n    assert False\n\n"
        "def test_fine():\n    pass\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "a long explanation" not in run.stdout
    last = run.stdout.strip().splitlines()[-1]
    assert "1 passed" in last and "1 xfailed" in last


def test_the_torch_floor_environment_tests_the_floor_pyproject_admits():
    (torch_req,) = [
        d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")
    ]
    floor = torch_req.removeprefix("torch>=")
    constraints = (ROOT / "tests" / "torch-floor-constraints.txt").read_text()
    (pin,) = re.findall(r"^torch==([\d.]+)$", constraints, re.M)
    # The floor's own release, or its latest patch release.
    assert pin == floor or pin.startswith(f"{floor}.")
    tox = (ROOT / "tox.ini").read_text()
    env = re.search(r"^\[testenv:torch-floor\]\n(.*?)(?=^\[|\Z)", tox, re.M | re.S)
    assert env, "tox.ini has no torch-floor environment"
    assert "tests/torch-floor-constraints.txt" in env.group(1)
    assert 'pytest -n 2 -m "not slow"' in env.group(1)
    assert "tox -e torch-floor" in _section("Run the tests")
    assert "torch-floor" not in (ROOT / ".ci" / "run").read_text()  # see tox.ini
