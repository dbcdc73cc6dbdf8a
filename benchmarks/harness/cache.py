"""The result cache shared by the scripts: a JSON file per result, named by a digest of what
produced it, so the same search asked for by two scripts runs once (``run_all`` runs them in
turn over the same feature stores)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Mapping

from featpipe.fileio import atomic_write, json_default


def cache_file(folder: Path, key: Mapping) -> Path:
    """``<folder>/<first 24 hex digits of sha256(key as sorted JSON)>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(folder) / f"{digest}.json"


def cached(path: Path | None, compute: Callable[[], dict]) -> dict:
    """The result stored at ``path``, or ``compute()`` stored there (no caching for None)."""
    if path is not None and path.exists():
        return json.loads(path.read_text())
    result = compute()
    if path is not None:
        write_json(path, result)
    return result


def write_json(path: Path, value, indent: int | None = None) -> Path:
    """``value`` as JSON, written atomically (the folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(value, indent=indent, default=json_default))


def read_json(path: Path):
    """The JSON value at ``path``, or None when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None
