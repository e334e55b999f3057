"""Sphinx configuration of the plasticity docs (``make docs``).

Warnings are errors and every cross-reference to our own names must resolve
(``-W --keep-going -n``). Types of other libraries (torch, numpy, matplotlib) appear in
signatures but have no inventory offline, so only those are exempt (``nitpick_ignore_regex``).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # plasticity and models/ from this checkout
# notebook kernels (myst-nb) inherit this: they import models/ from the checkout
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import plasticity  # noqa: E402

project = "plasticity"
author = "plasticity developers"
copyright = "plasticity developers"
release = version = plasticity.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",  # MyST markdown pages and the notebooks (it includes myst_parser)
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
html_theme = "furo"
html_title = f"plasticity {release}"
html_static_path: list[str] = []
templates_path: list[str] = []

nitpicky = True
nitpick_ignore_regex = [
    # other libraries' types in signatures and docstrings (no inventory offline)
    ("py:.*", r"(torch|nn|np|numpy|matplotlib|plt|snntorch|snn|typing|collections|abc)(\..*)?"),
    ("py:.*", r"(Tensor|Module|Parameter|Figure|Axes|Any|Callable|Iterable|Iterator|Sequence|Mapping|Protocol|Optimizer|ndarray|optional|Path|ProcessGroup)"),
    ("py:.*", r"(int|float|str|bool|dict|list|tuple|set|None|object|type|callable|array_like|function)"),
    ("py:.*", r"(Real|Number|Literal|Self|TypeVar|ParamSpec|T|P|OptimizerType|ParamsT|InnerOpt)"),
    ("py:.*", r"functools\..*"),
    # named in docstrings of files this docs change may not edit (engine.py, language.py,
    # rules/base.py): names that do not exist (Choice, choose, choices), a private method,
    # the private term class of eligibility read-outs
    ("py:.*", r"(Choice|choose|choices|_process|plasticity\.language\.ETerm|ETerm)"),
]

# autodoc: the class docstring (with its Args and Example) documents the constructor
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_class_signature = "mixed"
autoclass_content = "class"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # never torch's generic nn.Module text
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Shape", "notes_style")]
add_module_names = False
python_use_unqualified_type_names = True

# myst / myst-nb
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"  # the test suite builds with -D nb_execution_mode=off
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_in_temp = True  # the notebooks' results/ go to a temporary folder
nb_execution_raise_on_error = True
nb_merge_streams = True

# the notebooks live in notebooks/ (the test suite executes them there): copied here
TUTORIALS = DOCS / "tutorials"
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    target = TUTORIALS / notebook.name
    if not target.exists() or target.read_bytes() != notebook.read_bytes():
        shutil.copyfile(notebook, target)


# --------------------------------------------------------------------------- aliases
# A name is documented once, where the API reference puts it (plasticity.STDP, not also
# plasticity.rules.stdp.STDP); docstrings may refer to it by any path it is importable
# from. This resolves such a path to the documented object (the same Python object).

_documented: dict[int, str] | None = None


def _import(path: str):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_alias(app, env, node, contnode):
    global _documented
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    if _documented is None:
        _documented = {}
        for name in domain.objects:
            obj = _import(name)
            if obj is not None and not isinstance(obj, (int, float, str, bool, tuple)):
                _documented.setdefault(id(obj), name)
    target = node["reftarget"]
    candidates = [target]
    module = node.get("py:module")
    klass = node.get("py:class")
    if module and not target.startswith("plasticity"):
        candidates += [f"{module}.{klass}.{target}" if klass else None, f"{module}.{target}"]
    for path in filter(None, candidates):
        if path.rpartition(".")[2].startswith("_"):
            continue
        obj = _import(path)
        if obj is None:
            continue
        name = _documented.get(id(obj))
        if name is None:
            owner, _, attr = path.rpartition(".")
            parent = _documented.get(id(_import(owner))) if owner else None
            name = f"{parent}.{attr}" if parent and f"{parent}.{attr}" in domain.objects else None
        if name is not None:
            return domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
            )
    # a short name (``accumulator``, ``Eligibility``) in a docstring documented under
    # another path: the one documented object of that name, preferring the current class
    short = target.lstrip("~.").rpartition(".")[2]
    matches = [n for n in domain.objects if n.rpartition(".")[2] == short]
    if klass and len(matches) > 1:
        matches = [n for n in matches if n.rpartition(".")[0].endswith(klass)] or matches
    if len(matches) == 1:
        return domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], matches[0], node, contnode
        )
    return None


def _attribute_summary(app, what, name, obj, options, lines):
    """Napoleon reads ``Summary: more`` on the first line of an attribute's or property's
    docstring as ``type: description``; our docstrings mean a sentence. Breaking the line
    after the colon keeps the text (one paragraph) and stops that reading."""
    if what in ("attribute", "data", "property") and lines:
        head, colon, rest = lines[0].partition(": ")
        if colon and rest and not head.startswith(":"):
            lines[0:1] = [head + ":", rest]


_MIXINS = {"BoundSetters", "AccumulatorState"}


def _public_bases(app, name, obj, options, bases):
    """Shows a private base class (``_Sum``, ``_ModulatedSTDP``) as its public bases."""
    out = []
    for base in bases:
        if getattr(base, "__module__", "").startswith("plasticity.") and base.__name__ in _MIXINS:
            continue  # the methods a class is assembled from, documented on the class itself
        stack = [base]
        while stack:
            b = stack.pop(0)
            if b.__name__.startswith("_") and b is not object:
                stack[:0] = list(b.__bases__)
            elif b not in out and b is not object:
                out.append(b)
    bases[:] = out


def setup(app):
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-process-docstring", _attribute_summary, priority=100)  # before napoleon
    app.connect("autodoc-process-bases", _public_bases)
