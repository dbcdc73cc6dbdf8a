"""`featpipe recipes`: the named recipes and their default grids."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("recipes", help="list the named recipes and their default grids")
    p.set_defaults(func=run)


def run(args) -> int:
    from featpipe.classical.recipes import RECIPES

    for recipe in RECIPES.values():
        grid = ", ".join(f"{k}: {len(v)} values" for k, v in recipe.default_grid.items())
        print(f"{recipe.name:<13} {recipe.summary}  [grid: {grid or 'none'}]")
    return 0
