"""MkDocs hooks: tidy the reST left in rendered docstrings.

flowstage's docstrings are written for Sphinx. mkdocstrings parses their fields
(``:param x:``, ``:raises E:``) but renders the rest as Markdown, which leaves two
reST constructs visible in the HTML:

- cross-reference roles: ``:class:`Run``` becomes ``:class:<code>Run</code>``;
  the role prefix is dropped and the code span kept;
- literal-block markers: a paragraph ending in ``::`` (or a lone ``::``) before an
  indented block, which Markdown already shows as code; the marker becomes ``:``
  (or disappears), as Sphinx would render it.

Only the pages under ``reference/`` are touched; the guides are plain Markdown.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):(?=<code>)")
_LONE_MARKER = re.compile(r"<p>::</p>\s*")
_TRAILING_MARKER = re.compile(r"(?<=\S)::</p>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Strip Sphinx roles and literal-block markers from a reference page's HTML (MkDocs
    passes ``config`` and ``files`` too: the hook signature is fixed)."""
    if not page.file.src_uri.startswith("reference/"):
        return html
    html = _ROLE.sub("", html)
    html = _LONE_MARKER.sub("", html)
    return _TRAILING_MARKER.sub(":</p>", html)
