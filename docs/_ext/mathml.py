"""Sphinx HTML math renderer that writes MathML at build time, so the pages need no script or CDN.

Sphinx's HTML math renderers (``sphinx.ext.mathjax``, ``sphinxcontrib.jsmath``) leave the LaTeX source
in the page for a browser script to typeset, and ``sphinx.ext.imgmath`` needs a LaTeX installation.
Sphinx has no MathML renderer (sphinx-doc/sphinx#6092); Docutils does have a pure-Python LaTeX to
MathML converter (:func:`docutils.utils.math.latex2mathml.tex2mathml`, what ``rst2html5
--math-output=MathML`` uses). This extension registers that converter as Sphinx's ``mathml`` math
renderer: every ``:math:`` role and ``.. math::`` directive becomes a ``<math>`` element, which
current browsers display natively, offline. A formula the converter cannot read is a Sphinx warning
(an error under ``-W``) naming the source line, so no raw LaTeX reaches a page unnoticed.

Enable it with ``extensions = [..., "mathml"]`` (with this folder on ``sys.path``) and
``html_math_renderer = "mathml"``; ``_static/mathml.css`` aligns multi-line formulas.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.utils.math import MathError, latex2mathml, unichar2tex
from sphinx.application import Sphinx
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number
from sphinx.writers.html5 import HTML5Translator

logger = logging.getLogger(__name__)


def _to_mathml(translator: HTML5Translator, node: nodes.Element, as_block: bool) -> str:
    """The MathML of ``node``'s LaTeX, or the escaped LaTeX and a warning if it cannot be converted."""
    # Non-ASCII symbols typed directly (e.g. "α") are mapped to their LaTeX commands first, as
    # Docutils' own HTML writer does.
    latex = node.astext().translate(unichar2tex.uni2tex_table)
    try:
        return latex2mathml.tex2mathml(latex, as_block=as_block)
    except MathError as error:
        logger.warning("cannot convert this formula to MathML (%s): %s", error, node.astext(),
                       location=node, type="mathml")
        return translator.encode(node.astext())


def visit_inline_math(translator: HTML5Translator, node: nodes.math) -> None:
    """Writes an inline formula as ``<span class="math">`` holding a ``<math>`` element."""
    translator.body.append(translator.starttag(node, "span", "", CLASS="math notranslate"))
    translator.body.append(_to_mathml(translator, node, as_block=False))
    translator.body.append("</span>")
    raise nodes.SkipNode


def visit_block_math(translator: HTML5Translator, node: nodes.math_block) -> None:
    """Writes a displayed formula (with its equation number, if labelled) as ``<div class="math">``."""
    translator.body.append(translator.starttag(node, "div", CLASS="math notranslate"))
    if node.get("number"):
        translator.body.append(f'<span class="eqno">({get_node_equation_number(translator, node)})')
        translator.add_permalink_ref(node, _("Link to this equation"))
        translator.body.append("</span>")
    translator.body.append(_to_mathml(translator, node, as_block=True))
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_html_math_renderer("mathml", (visit_inline_math, None), (visit_block_math, None))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
