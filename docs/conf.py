"""Sphinx configuration of the zg_asktell documentation (built by ``make docs``)."""

from __future__ import annotations

import zg_asktell  # installed (editable) by `make docs`

project = "zg_asktell"
author = "zg_asktell developers"
copyright = "2026, zg_asktell developers"  # noqa: A001
release = zg_asktell.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

# The example gallery: every examples/plot_*.py runs at build time and makes its figure.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|(^|[\\/])_\w*\.py$",  # helpers such as _compare.py: no page
    "download_all_examples": False,
    "remove_config_comments": True,
}

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py"]
# A page added under docs/ but not yet listed in index.md's toctrees still builds (and is
# found by search) instead of failing the strict build; list it there to put it in the menu.
suppress_warnings = ["toc.not_included"]

# Markdown: heading anchors so that `page.md#a-heading` links resolve, $...$ maths.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# API reference from the Google-style docstrings, with the signatures' types.
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": False}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

html_theme = "furo"
html_title = f"zg_asktell {release}"
html_static_path: list[str] = []
