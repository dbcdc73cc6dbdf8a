"""Shared by the commands: JSON on stdout, the --trust option and the image-source options."""

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



def add_resize_options(parser) -> None:
    """--crop-pct and --pad-color (the details of --resize crop and pad)."""
    parser.add_argument("--crop-pct", type=float, default=None,
                        help="fraction kept by --resize crop, in (0, 1] (default: the weights')")
    parser.add_argument("--pad-color", default="white",
                        help="padding of --resize pad: white, black, grey, R,G,B or #RRGGBB")


def add_source_options(parser) -> None:
    """--follow-links and --allow-outside (see :func:`featpipe.data.sources.open_source`)."""
    parser.add_argument("--follow-links", action="store_true",
                        help="follow symbolic links that leave their class folder")
    parser.add_argument("--allow-outside", action="store_true",
                        help="read manifest paths outside the manifest's folder")
