"""Options from ``TRIO_WS_*`` environment variables, and back to arguments for worker processes."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ._arguments import AppendOption, CommandLineParser, Option
from ._values import CLIError, boolean

__all__ = ["apply_environment", "option_variables", "worker_argv"]


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0


def _convert(option: Option, text: str) -> Any:
    action = option.action
    if _is_switch(action):
        return boolean(text)
    convert = action.type if callable(action.type) else str
    if isinstance(action, AppendOption):
        values = [convert(part.strip()) for part in text.split(",") if part.strip()]
        return values or None
    value = convert(text)
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise argparse.ArgumentTypeError(f"expected one of {choices}, not {text!r}")
    return value


def apply_environment(parser: CommandLineParser, environ: Mapping[str, str]) -> None:
    """Take each option's default from its ``TRIO_WS_*`` variable, if set (the command line still
    wins). Raises :class:`CLIError` naming the variable for a bad value."""
    defaults: dict[str, Any] = {}
    for option in parser.options:
        if option.env is None or option.env not in environ:
            continue
        text = environ[option.env]
        try:
            defaults[option.action.dest] = _convert(option, text)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise CLIError(f"{option.env}={text!r}: {exc}") from None
    parser.set_defaults(**defaults)


def option_variables(parser: CommandLineParser) -> set[str]:
    """The names of the environment variables the options read."""
    return {option.env for option in parser.options if option.env is not None}


def worker_argv(parser: CommandLineParser, args: argparse.Namespace, **overrides: Any) -> list[str]:
    """Arguments that give a worker process exactly ``args`` (with ``overrides``), every option
    spelled out, so that nothing depends on the environment it inherits."""
    values = {**vars(args), **overrides}
    argv: list[str] = []
    for option in parser.options:
        action = option.action
        value = values.get(action.dest)
        if not action.option_strings:  # the target
            if value is not None:
                argv.append(str(value))
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif _is_switch(action):
            if value:
                argv.append(flag)
        elif value is None:
            continue
        elif isinstance(action, AppendOption):
            argv += [f"{flag}={item}" for item in value]
        else:
            argv.append(f"{flag}={value}")  # (one word: a value may start with "-")
    return argv
