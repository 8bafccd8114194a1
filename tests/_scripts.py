"""Running the repository's scripts (examples, benchmarks) from the tests."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args, timeout=300, expect_returncode=0):
    """Run ``python *args`` from the repository root with one CPU thread.

    One thread, because under ``pytest -n 2`` two such subprocesses share two cores
    and torch's spinning OpenMP threads slow down many times over when the cores are
    oversubscribed. Returns the completed process once its exit code is as expected.
    """
    # The checkout's own skmoe comes first, installed or not, so that a script tests
    # the code beside it rather than whatever copy the environment holds.
    pythonpath = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": pythonpath,
    }
    completed = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == expect_returncode, (
        f"{' '.join(map(str, args))} exited with {completed.returncode}\n"
        f"--- stdout ---\n{completed.stdout}\n--- stderr ---\n{completed.stderr}"
    )
    return completed
