"""The command line's logging: a plain format on stderr, or ``--log-config`` (a ``dictConfig`` in
JSON or YAML, or a ``fileConfig`` INI file); then ``--log-level`` and ``--no-access-log``."""

from __future__ import annotations

import argparse
import configparser
import importlib
import json
import logging
import logging.config
import os
from typing import Any

from ._values import CLIError

__all__ = ["configure_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _read_yaml(path: str) -> Any:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        raise CLIError(
            f"--log-config {path} is YAML, which needs PyYAML (pip install pyyaml); or give a .json file"
        ) from None
    with open(path, encoding="utf-8") as file:
        try:
            return yaml.safe_load(file)
        except yaml.YAMLError as exc:
            raise CLIError(f"--log-config {path} is not valid YAML: {exc}".replace("\n", " ")) from None


def _load(path: str) -> None:
    if not os.path.isfile(path):
        raise CLIError(f"log configuration file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".json", ".yaml", ".yml"):
        try:
            logging.config.fileConfig(path, disable_existing_loggers=False)
        except (configparser.Error, KeyError, ValueError, TypeError, ImportError) as exc:
            raise CLIError(f"--log-config {path}: not a usable logging INI file ({exc!r})") from None
        return
    if suffix == ".json":
        with open(path, encoding="utf-8") as file:
            try:
                config = json.load(file)
            except json.JSONDecodeError as exc:
                raise CLIError(f"--log-config {path} is not valid JSON: {exc}") from None
    else:
        config = _read_yaml(path)
    if not isinstance(config, dict):
        raise CLIError(f"--log-config {path} must hold a mapping (a dictConfig), not {type(config).__name__}")
    config.setdefault("version", 1)
    config.setdefault("disable_existing_loggers", False)  # (the trio_ws loggers exist already)
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise CLIError(f"--log-config {path}: {exc}") from None


def configure_logging(args: argparse.Namespace) -> None:
    """Set up logging as ``--log-config``, ``--log-level`` and ``--access-log`` say."""
    if args.log_config:
        _load(args.log_config)
    else:
        logging.basicConfig(format=FORMAT)
    level = args.log_level or (None if args.log_config else "info")
    if level is not None:
        logging.getLogger("trio_ws").setLevel(level.upper())
    if not args.access_log:
        logging.getLogger("trio_ws.access").setLevel(logging.WARNING)  # (its lines are INFO)
