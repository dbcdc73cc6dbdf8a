"""Shared by the commands: JSON on stdout and the --trust option."""

from __future__ import annotations

import json
import sys

from featpipe.fileio import json_default


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=json_default)
    sys.stdout.write("\n")


def parse_trust(values: list[str]) -> bool | list[str]:
    """--trust values: True for 'all', else the comma-separated type names."""
    if "all" in values:
        return True
    return [t for value in values for t in value.split(",") if t]

