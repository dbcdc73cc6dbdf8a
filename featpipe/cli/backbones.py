"""`featpipe backbones`: the registered backbones and name schemes."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("backbones", help="list the embedded backbones and the name schemes")
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.models.registry import list_backbones

    for name in list_backbones():
        print(name)
    return 0
