"""A griffe extension for the API reference: mnistgen's docstrings use reStructuredText roles
(:class:`Model`, :func:`load`) and "Example::" before an indented code block, which Markdown would
show as written. This turns each role into a code span and "Example::" into "Example:"; the
indented block below it is already a Markdown code block."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
LITERAL_BLOCK_MARKER = re.compile(r"::$", re.MULTILINE)


def markdown_of(docstring: str) -> str:
    """``docstring`` with its reStructuredText roles and literal-block markers made Markdown."""
    return LITERAL_BLOCK_MARKER.sub(":", ROLE.sub(r"`\1`", docstring))


class RstDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
