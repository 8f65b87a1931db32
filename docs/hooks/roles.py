"""A griffe extension for the API reference: docstrings' reST roles (:class:`WebSocket`,
:meth:`accept`, :func:`~trio_ws.serve_websocket` …) become links to the object's entry in the
reference, or plain code when it has none (``trio.TooSlowError``, ``ValueError``, internals).

Docstrings keep the roles, which read well in ``help()`` and editors; only the rendered pages change.
A name is looked up as Python would see it from where the docstring is: the class, then its module,
then any object of the package with that (dotted) name, if only one has it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|data|exc|mod|obj):`(~?)([\w.]+)(\(\))?`")
REFERENCE = Path(__file__).resolve().parent.parent / "reference.md"
ENTRY = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def _public_members(obj: griffe.Object | griffe.Alias, path: str, into: dict[str, str]) -> None:
    """``into[canonical path] = path in the reference`` for ``obj`` and the members it renders."""
    target = obj.final_target if isinstance(obj, griffe.Alias) else obj
    into.setdefault(target.path, path)
    if isinstance(target, griffe.Class):
        for name, member in target.members.items():
            if not name.startswith("_"):
                _public_members(member, f"{path}.{name}", into)


class DocstringRoles(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        rendered: dict[str, str] = {}  # canonical path -> the path of its entry in the reference
        for entry in ENTRY.findall(REFERENCE.read_text()):
            if entry.split(".")[0] == pkg.name:
                _public_members(pkg[entry.partition(".")[2]], entry, rendered)
        by_tail: dict[str, set[str]] = defaultdict(set)  # "WebSocket.accept", "accept" -> paths
        for canonical, path in rendered.items():
            parts = canonical.split(".")
            for i in range(1, min(3, len(parts)) + 1):
                by_tail[".".join(parts[-i:])].add(path)
        self._rewrite(pkg, rendered, by_tail, set())

    def _rewrite(
        self, obj: griffe.Object, rendered: dict[str, str], by_tail: dict[str, set[str]], seen: set[str]
    ) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(lambda m: _link(m, obj, rendered, by_tail), obj.docstring.value)
        for member in obj.members.values():
            if not isinstance(member, griffe.Alias):
                self._rewrite(member, rendered, by_tail, seen)


def _link(
    match: re.Match[str], obj: griffe.Object, rendered: dict[str, str], by_tail: dict[str, set[str]]
) -> str:
    short, name, call = match.groups()
    shown = (name.rpartition(".")[2] if short else name) + (call or "")
    around = (obj, obj.parent, obj.module)
    scopes = [o for o in around if o is not None and not isinstance(o, griffe.Function)]
    candidates = [f"{scope.path}.{name}" for scope in scopes] + [name]
    for candidate in candidates:
        if candidate in rendered:
            return f"[`{shown}`][{rendered[candidate]}]"
        if candidate in rendered.values():
            return f"[`{shown}`][{candidate}]"
    found = by_tail.get(name, set())
    if len(found) == 1:
        return f"[`{shown}`][{next(iter(found))}]"
    return f"`{shown}`"
