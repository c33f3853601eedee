"""Griffe extension (mkdocs.yml, mkdocstrings ``extensions``): docstrings as the site shows them.

Doctest examples (``>>>`` lines and their output, up to a blank line) become ``pycon`` code
blocks: Markdown would read their ``>>>`` as nested quotes (griffe renders an ``Example:``
section as an admonition of Markdown text).

The docstrings cross-reference with Sphinx roles (``:func:`keras_normed.rescale```). This turns
each into inline code linked to the object's entry in the API reference: a fully qualified
public name (``keras_normed.x.y``) must resolve, so a reference to an object that was renamed or
removed fails the strict build (modules excepted: not every module has a page); a short name
(``:func:`rescale```) is looked up next to the object whose docstring names it and stays plain
code when it is not documented.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|attr|data|exc|obj):`(~?)(\.?)([\w.]+)`")


class DocstringsForTheSite(griffe.Extension):
    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is None:
            return
        if "```pycon" not in obj.docstring.value:
            obj.docstring.value = _fence_doctests(obj.docstring.value)
        if ":`" not in obj.docstring.value:
            return
        module = obj.module.path if not obj.is_module else obj.path
        scope = obj.parent.path if obj.is_function and obj.parent.is_class else module

        def link(match: re.Match) -> str:
            kind, tilde, dot, name = match.groups()
            shown = name.rsplit(".", 1)[-1] if tilde else name
            code = f"<code>{shown}{'()' if kind in ('func', 'meth') else ''}</code>"
            if any(part.startswith("_") for part in name.split(".")):
                return code
            if name.startswith("keras_normed.") and not dot and kind != "mod":
                return f'<autoref identifier="{name}">{code}</autoref>'
            if dot:  # relative to the current package: :mod:`.state`
                target = f"{module}.{name}"
            elif kind == "meth" or (kind == "attr" and obj.is_class):
                target = f"{obj.path if obj.is_class else scope}.{name}"
            else:
                target = f"{module}.{name}"
            return f'<autoref identifier="{target}" optional>{code}</autoref>'

        obj.docstring.value = _ROLE.sub(link, obj.docstring.value)


def _fence_doctests(text: str) -> str:
    out, indent = [], None
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        if indent is None and stripped.startswith(">>> "):
            indent = line[: len(line) - len(stripped)]
            if out and out[-1].strip() and out[-1].startswith(indent) and \
                    not out[-1][len(indent):].startswith(" "):
                out.append("")  # ends a paragraph at the same indentation (not a section title)
            out.append(indent + "```pycon")
        elif indent is not None and not stripped:
            out.append(indent + "```")
            indent = None
        out.append(line)
    if indent is not None:
        out.append(indent + "```")
    return "\n".join(out)
