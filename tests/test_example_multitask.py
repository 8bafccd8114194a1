"""The mixed-type multi-task example runs end to end in its quick mode."""

import re

import pytest
from _scripts import ROOT, run_script

SCRIPT = ROOT / "examples" / "multitask_mixed.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="examples are not part of this install"
)


def test_multitask_mixed_example():
    out = run_script(SCRIPT, "--quick", timeout=180).stdout
    assert "'click': 'binary', 'conversion': 'binary', 'dwell': 'regression'" in out
    assert re.search(r"^learned task weights: \{'click': [0-9.]+", out, re.M), out
    assert re.search(r"^click AUC: 0\.[0-9]+$", out, re.M), out
    assert re.search(r"^mean p\(click and conversion\): 0\.[0-9]+$", out, re.M), out
