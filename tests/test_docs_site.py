"""The documentation site lists every public object and every Markdown page.

The build itself (``sphinx-build -W``, warnings as errors) runs in CI (.ci/run); these
checks are the cheap part that catches a page or an object left out of the site.
"""

import re

import pytest
from _scripts import ROOT

import skmoe
import skmoe.datasets
import skmoe.inspection
import skmoe.nn

DOCS = ROOT / "docs"
pytestmark = pytest.mark.skipif(
    not (DOCS / "conf.py").is_file(), reason="docs are not part of this install"
)


def _listed(module_name):
    """Names listed in docs/api.rst under ``.. currentmodule:: module_name``."""
    text = (DOCS / "api.rst").read_text()
    names = set()
    for section in re.split(r"^\.\. currentmodule:: ", text, flags=re.M)[1:]:
        module, body = section.split("\n", 1)
        if module.strip() == module_name:
            names |= set(re.findall(r"^   ([\w.]+)$", body, re.M))
    return names


@pytest.mark.parametrize(
    "module",
    [skmoe, skmoe.inspection, skmoe.datasets, skmoe.nn],
    ids=lambda m: m.__name__,
)
def test_api_page_lists_every_public_object(module):
    public = {name for name in module.__all__ if not name.startswith("__")}
    assert public <= _listed(module.__name__)


def test_every_markdown_page_is_in_a_toctree():
    index = (DOCS / "index.md").read_text()
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    listed = set(re.findall(r"^([\w/]+)$", index, re.M))
    assert pages <= listed, pages - listed
