"""Sphinx configuration of the ignite-pseudolabel documentation.

Build the site with ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` and run every
example (the ``testcode`` blocks of the pages and the docstring examples shown by autodoc) with
``python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest``.
"""

import os
import sys

# Import the package from this checkout, installed or not; and the local extensions in _ext/.
sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

import ignite_pseudolabel  # noqa: E402

project = "ignite-pseudolabel"
author = "ignite-pseudolabel contributors"
copyright = "ignite-pseudolabel contributors"
version = ignite_pseudolabel.__version__
release = ignite_pseudolabel.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "mathml",  # _ext/mathml.py: formulas written as MathML at build time (no MathJax, no CDN)
    "myst_parser",  # Markdown: the changelog page includes CHANGELOG.md
]
# Markdown is read only where a page includes it (changelog.rst); the pages themselves are reStructuredText.
source_suffix = {".rst": "restructuredtext"}

exclude_patterns = ["_build"]
root_doc = "index"

# -- references: every internal one must resolve ---------------------------------------------------
# nitpicky makes an unresolved reference a warning (an error under -W). The package's own names all
# resolve. References into other projects (torch, torchvision, ignite, kornia, the Python standard
# library) would need intersphinx, which downloads the projects' inventories: the docs build offline
# (CI and the project's machines have no internet apart from the package registries), so those
# targets are listed below and shown as plain names instead of links.
nitpicky = True
nitpick_ignore_regex = [
    # other projects' objects, named in signatures (type hints) and prose: no inventory offline
    (r"py:.*", r"(torch|torchvision|ignite|kornia)(\..+)?"),
    # the Python standard library, also without its inventory offline
    (r"py:.*", r"(pathlib|collections\.abc|typing)\..+"),
]
nitpick_ignore = [
    # annotations that name an imported class by its short name (``from torch.utils.data import
    # Dataset``; ``from __future__ import annotations`` keeps them unevaluated), and torch's own
    # ``Module.forward`` docstring (``Module``, ``nn.Module``), inherited by subclasses that do not
    # override it
    ("py:class", "Dataset"),
    ("py:class", "Sampler"),
    ("py:class", "Engine"),
    ("py:class", "Module"),
    ("py:class", "nn.Module"),
    ("py:class", "Path"),
]

# -- autodoc and napoleon (Google-style docstrings) ------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections become :ivar: fields rather than attribute directives, which would
# duplicate the properties and named-tuple fields that autodoc documents as members.
napoleon_use_ivar = True
# Type aliases in the signatures, shown (and linked) by their documented names.
autodoc_type_aliases = {"GlobalStepTransform": "ignite_pseudolabel.tensorboard.GlobalStepTransform"}

# -- doctest: the pages' testcode blocks and the docstring examples --------------------------------
# The docstring examples run under pytest with their module's globals; give them the same names here.
doctest_global_setup = """
import torch
from torch import nn
import ignite_pseudolabel
from ignite_pseudolabel import *
# docstrings of building blocks use their module's names (not all re-exported by the root)
from ignite_pseudolabel.alignment import *
from ignite_pseudolabel.augment import *
from ignite_pseudolabel.batch import *
from ignite_pseudolabel.batch_views import *
from ignite_pseudolabel.criterion import *
from ignite_pseudolabel.dense import *
from ignite_pseudolabel.dense_batch_views import *
from ignite_pseudolabel.device_data import *
from ignite_pseudolabel.engine_state import *
from ignite_pseudolabel.functional import *
from ignite_pseudolabel.inference import *
from ignite_pseudolabel.labels import *
from ignite_pseudolabel.losses import *
from ignite_pseudolabel.mining import *
from ignite_pseudolabel.mixing import *
from ignite_pseudolabel.prepare import *
from ignite_pseudolabel.pseudo_term import *
from ignite_pseudolabel.publishing import *
from ignite_pseudolabel.randaugment import *
from ignite_pseudolabel.regularisers import *
from ignite_pseudolabel.rounds import *
from ignite_pseudolabel.selection import *
from ignite_pseudolabel.schedules import *
from ignite_pseudolabel.split import *
from ignite_pseudolabel.tensorboard import *
from ignite_pseudolabel.thresholds import *
from ignite_pseudolabel.unsupervised import *
from ignite_pseudolabel.view_ops import *
from ignite_pseudolabel.view_options import *
from ignite_pseudolabel.weighting import *
"""

# -- HTML -------------------------------------------------------------------------------------------
html_theme = "furo"
html_math_renderer = "mathml"
html_static_path = ["_static"]
html_css_files = ["mathml.css"]
html_title = f"ignite-pseudolabel {release}"
