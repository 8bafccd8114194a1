"""Every ```python block of README.md and docs/*.md runs: each file's blocks in order,
in one namespace, as a reader pasting them one after another would.

A block that cannot run in CI is preceded by the line
``<!-- docs-test: skip <reason> -->``; such blocks must stay few and give a reason.
A block followed by a ```text block (a line or three of prose between them at most)
claims that it prints that text: the words must match, whole numbers exactly and
decimals to 0.02 (another platform's rounding, not another model).
"""

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"^(?:<!-- docs-test: skip (?P<reason>.*?) -->\n)?```python\n(?P<code>.*?)^```\n"
    r"(?:\n(?:[^`\n][^\n]*\n){0,3}\n```text\n(?P<output>.*?)^```)?",
    re.M | re.S,
)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
DECIMAL_TOLERANCE = 0.02
# docs/scaling.md: the torchrun, Ray Train and accelerate launches, and the Ray backend
MAX_SKIPPED = 4


def _blocks(path):
    """``(line, code, skip_reason, output)`` of each python block of ``path``;
    ``output`` is the text it claims to print, or ``None``."""
    text = path.read_text()
    return [
        (text.count("\n", 0, m.start("code")) + 1, m["code"], m["reason"], m["output"])
        for m in BLOCK.finditer(text)
    ]


def _same_output(printed, claimed):
    """Whether ``printed`` says what ``claimed`` does (see the module docstring)."""
    words = [NUMBER.sub("#", " ".join(t.split())) for t in (printed, claimed)]
    if words[0] != words[1]:
        return False
    for got, want in zip(NUMBER.findall(printed), NUMBER.findall(claimed), strict=True):
        if re.fullmatch(r"-?\d+", want):
            if got != want:
                return False
        elif abs(float(got) - float(want)) > DECIMAL_TOLERANCE:
            return False
    return True


def test_output_comparison_is_strict_where_it_must_be():
    claimed = "4476 of 17160 weights\ntest accuracy: 0.958\nusage: [0.1  0.9]"
    assert _same_output(claimed, claimed)
    assert _same_output(claimed.replace("0.958", "0.951"), claimed)
    assert _same_output(claimed.replace("[0.1  0.9]", "[0.11 0.89]"), claimed)
    assert not _same_output(claimed.replace("0.958", "0.829"), claimed)
    assert not _same_output(claimed.replace("4476", "4477"), claimed)
    assert not _same_output(claimed.replace("test", "train"), claimed)
    assert not _same_output(claimed + "\nmore", claimed)


def test_blocks_are_found():
    counts = {path.name: len(_blocks(path)) for path in FILES}
    assert counts["README.md"] >= 1 and counts["user_guide.md"] >= 3
    assert counts["skorch.md"] == 2


def test_every_readme_block_that_prints_shows_what_it_prints():
    blocks = _blocks(ROOT / "README.md")
    assert sum(output is not None for *_, output in blocks) >= 2
    for line, code, _, output in blocks:
        assert "print(" not in code or output is not None, f"README.md:{line}"


def test_few_blocks_are_skipped_and_each_says_why():
    skipped = [
        (path.name, line, reason)
        for path in FILES
        for line, _, reason, _ in _blocks(path)
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
        for line, code, reason, output in _blocks(path):
            if reason is not None:
                continue
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
            except Exception as exc:
                pytest.fail(
                    f"{path.name}, the block at line {line} fails: "
                    f"{type(exc).__name__}: {exc}"
                )
            if output is not None and not _same_output(printed.getvalue(), output):
                pytest.fail(
                    f"{path.name}, the block at line {line} prints\n"
                    f"{printed.getvalue()}where the text after it says\n{output}"
                )
    torch.set_num_threads(threads)  # a block may change it, as a reader's would


def test_readme_model_size_figures():
    from sklearn.datasets import load_breast_cancer

    from skmoe import MixtureOfExpertsClassifier
    from skmoe.inspection import model_size

    readme = (ROOT / "README.md").read_text()
    claim = re.search(
        r"\((\d+) dense experts of (\d+) units, (\d+) features\) that\s+is (\d+) "
        r"weights, (\d+) KiB of experts and (\d+) FLOPs per row",
        readme,
    )
    assert claim, "README's model_size figures moved"
    experts, units, features, weights, kib, flops = map(int, claim.groups())
    X, y = load_breast_cancer(return_X_y=True)
    clf = MixtureOfExpertsClassifier(max_iter=1, random_state=0, device="cpu")
    clf.fit(X, y)
    assert (clf.n_experts, clf.expert_hidden_layer_sizes) == (experts, (units,))
    assert (clf.top_k, X.shape[1]) == (None, features)
    size = model_size(clf)
    assert size.total_params == weights
    assert round(size.bytes["experts"] / 1024) == kib
    assert size.flops_per_row == flops
