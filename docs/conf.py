"""Sphinx configuration for the skmoe documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(``pip install -e ".[docs]"``). The build is offline by default; set
``SKMOE_DOCS_INTERSPHINX=1`` to link to the Python, NumPy, scikit-learn and
joblib documentation through intersphinx (needs the network: an inventory
that cannot be fetched is a warning, hence an error under ``-W``).
"""

import os
import re

import skmoe

project = "skmoe"
author = "the skmoe developers"
copyright = "the skmoe developers"
release = skmoe.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py"]

# API reference: one page per object (templates in _templates/autosummary)
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# Examples gallery, built from examples/ (each example runs in seconds; the
# tests run them too, see tests/test_examples.py)
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    # sphinx-gallery's own default; SKMOE_DOCS_PLOT_GALLERY=0 skips running
    # the examples (a quick build of the prose and the API reference)
    "plot_gallery": os.environ.get("SKMOE_DOCS_PLOT_GALLERY", "1") != "0",
    "reference_url": {"skmoe": None},
    "doc_module": ("skmoe",),
    "backreferences_dir": "generated/backreferences",
}

if os.environ.get("SKMOE_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "joblib": ("https://joblib.readthedocs.io/en/stable", None),
    }

# Labels of scikit-learn's user guide that docstrings inherited from
# scikit-learn (``score``) refer to. Offline, intersphinx cannot resolve them;
# link them to scikit-learn's pages instead of leaving a broken reference.
SKLEARN_URL = "https://scikit-learn.org/stable/"
SKLEARN_LABELS = {
    "r2_score": "modules/model_evaluation.html#r2-score",
    "accuracy_score": "modules/model_evaluation.html#accuracy-score",
    "metadata_routing": "metadata_routing.html",
}


def _link_sklearn_labels(app, env, node, contnode):
    from docutils import nodes

    if node.get("refdomain") != "std" or node.get("reftype") != "ref":
        return None
    page = SKLEARN_LABELS.get(node.get("reftarget"))
    if page is None:
        return None
    reference = nodes.reference("", "", internal=False, refuri=SKLEARN_URL + page)
    reference.append(contnode)
    return reference


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn generates set_<method>_request for every method taking
    # metadata; its own guide documents them (linked from get_metadata_routing)
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
    # after intersphinx (priority 500 by default), so its links win when on
    app.connect("missing-reference", _link_sklearn_labels, priority=900)


html_theme = "alabaster"
html_theme_options = {
    "description": "Mixtures of experts for scikit-learn",
    "fixed_sidebar": True,
}

# numpydoc checks of the public docstrings, errors under -W: every parameter
# documented and no unknown one, a summary and Returns where due, known
# sections in order. Methods generated or inherited from scikit-learn are its
# business.
numpydoc_validation_checks = {
    "GL06",
    "GL07",
    "GL08",
    "PR01",
    "PR02",
    "PR03",
    "PR10",
    "RT01",
    "SS01",
}
numpydoc_validation_exclude = {
    r"\.get_metadata_routing$",
    r"\.set_\w+_request$",
    r"\.score$",
    r"\.__init__$",
}
