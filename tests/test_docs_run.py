"""Every ```python block of README.md and docs/*.md runs: each file's blocks in order,
in one namespace, as a reader pasting them one after another would.

A block that cannot run in CI is preceded by the line
``<!-- docs-test: skip <reason> -->``; such blocks must stay few and give a reason.
"""

import re
import warnings
from pathlib import Path

import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"^(?:<!-- docs-test: skip (?P<reason>.*?) -->\n)?```python\n(?P<code>.*?)^```",
    re.M | re.S,
)
# docs/scaling.md: the torchrun, Ray Train and accelerate launches, and the Ray backend
MAX_SKIPPED = 4


def _blocks(path):
    """``(line, code, skip_reason)`` of each python block of ``path``."""
    text = path.read_text()
    return [
        (text.count("\n", 0, m.start("code")) + 1, m["code"], m["reason"])
        for m in BLOCK.finditer(text)
    ]


def test_blocks_are_found():
    counts = {path.name: len(_blocks(path)) for path in FILES}
    assert counts["README.md"] >= 1 and counts["user_guide.md"] >= 3
    assert counts["skorch.md"] == 2


def test_few_blocks_are_skipped_and_each_says_why():
    skipped = [
        (path.name, line, reason)
        for path in FILES
        for line, _, reason in _blocks(path)
        if reason is not None
    ]
    assert len(skipped) <= MAX_SKIPPED, skipped
    assert all(len(reason.strip()) > 10 for *_, reason in skipped), skipped


@pytest.mark.parametrize("path", [p for p in FILES if _blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run_in_order(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks that save files write them here
    namespace = {"__name__": "__docs__"}
    threads = torch.get_num_threads()
    with warnings.catch_warnings():
        if path.name == "README.md":
            # The README's examples converge as written.
            warnings.simplefilter("error", ConvergenceWarning)
        for line, code, reason in _blocks(path):
            if reason is not None:
                continue
            try:
                exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
            except Exception as exc:
                pytest.fail(
                    f"{path.name}, the block at line {line} fails: "
                    f"{type(exc).__name__}: {exc}"
                )
    torch.set_num_threads(threads)  # a block may change it, as a reader's would
