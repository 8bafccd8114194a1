"""Sphinx configuration of the skmoe documentation.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` after
``pip install -e ".[docs]"``. ``SKMOE_DOCS_QUICK=1`` runs the gallery's examples in
their quick mode (tiny data, for CI); ``SKMOE_DOCS_INTERSPHINX=1`` links to the
documentation of numpy, scikit-learn and PyTorch (needs the internet).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout, installed or not
os.environ.setdefault("MPLBACKEND", "Agg")

import skmoe  # noqa: E402

project = "skmoe"
author = "The skmoe developers"
copyright = "The skmoe developers"
version = release = skmoe.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]
templates_path = []

# Markdown pages stay Markdown; GitHub-style links to scripts outside docs/ stay
# plain links rather than cross-references.
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
# config.cache: the gallery's reset_argv is a function, which Sphinx cannot pickle;
# it only means the configuration is compared afresh on every build.
suppress_warnings = ["myst.xref_missing", "config.cache"]

autosummary_generate = True
# Members from the scikit-learn mixins are documented; those of BaseEstimator and of
# torch's Module (documented upstream) and the metadata-routing setters are not.
autodoc_default_options = {
    "members": True,
    "inherited-members": "BaseEstimator,Module",
    "exclude-members": (
        "set_fit_request,set_partial_fit_request,set_score_request,"
        "set_predict_request,get_metadata_routing"
    ),
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

if os.environ.get("SKMOE_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://pytorch.org/docs/stable", None),
    }
else:
    intersphinx_mapping = {}

QUICK = os.environ.get("SKMOE_DOCS_QUICK") == "1"


def _example_argv(sphinx_gallery_conf, script_vars):
    """Command-line arguments of an example: ``--quick`` in quick builds."""
    source = Path(script_vars["src_file"]).read_text()
    return ["--quick"] if QUICK and '"--quick"' in source else []


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Every example runs at build time except those that need hardware (gpu_*).
    "filename_pattern": r"/(?!gpu_)[^/]+\.py$",
    "reset_argv": _example_argv,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "capture_repr": ("_repr_html_", "__repr__"),
    "write_computation_times": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skmoe {version}"
html_theme_options = {
    "navigation_with_keys": False,
    "github_url": "https://github.com/skmoe/skmoe",
}
html_static_path = []
