"""The command-line reference: the options' tables of ``docs/cli.md``, made from the parser, so
that the page and the command line cannot drift apart (``tests/test_cli.py`` compares them).

    python -m trio_ws._cli._reference docs/cli.md     # rewrite the tables in place
    python -m trio_ws._cli._reference                 # print them
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._arguments import Option, build_parser

__all__ = ["BEGIN", "END", "options_reference", "update_page"]

BEGIN = "<!-- options: made from the parser by `python -m trio_ws._cli._reference docs/cli.md` -->"
END = "<!-- end of options -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def _names(option: Option) -> str:
    action = option.action
    if not action.option_strings:
        return f"`{action.metavar}`"
    if action.nargs == 0:
        return ", ".join(f"`{flag}`" for flag in action.option_strings)
    if action.metavar is not None:
        value = str(action.metavar)
    elif action.choices is not None:
        value = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        value = action.dest.upper()
    return ", ".join(f"`{flag} {value}`" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    default = action.default
    if default is None or default == "" or default == []:
        return ""
    if isinstance(default, bool):
        return "on" if default else "off"
    return f"`{default}`"


def options_reference() -> str:
    """The tables of every option, one per section of the help, in Markdown."""
    sections: dict[str, list[Option]] = {}
    for option in build_parser("trio-ws").options:
        if option.action.help is not argparse.SUPPRESS:
            sections.setdefault(option.section, []).append(option)
    lines: list[str] = []
    for section, options in sections.items():
        lines += [
            f"### {section}",
            "",
            "| option | environment | default | what it does |",
            "| --- | --- | --- | --- |",
        ]
        for option in options:
            env = f"`{option.env}`" if option.env else ""
            cells = [_names(option), env, _default(option.action), option.help]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def update_page(text: str) -> str:
    """``text`` (a page holding the markers) with fresh tables between its markers."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the page lacks the markers {BEGIN!r} and {END!r}")
    return f"{head}{BEGIN}\n\n{options_reference()}\n{END}{tail}"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        page = Path(sys.argv[1])
        page.write_text(update_page(page.read_text()))
    else:
        print(options_reference())
