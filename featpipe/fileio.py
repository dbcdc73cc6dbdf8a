"""Files written safely: atomic replacement, checked output paths, one writer per store, JSON.

Every file featpipe writes (stores, models, reports, predictions, benchmark pages) goes through
:func:`atomic_write`: it is written under a temporary name in the same folder and renamed over
the target only when complete, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from featpipe.errors import FeatpipeError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object] | bytes | str,
                 *, mode: int = 0o644) -> Path:
    """Write ``path`` atomically; ``write`` is the content or a function given the binary file.

    The file gets ``mode`` (temporary files are created 0600).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "a.txt", "hello").read_text()
    'hello'
    """
    path = Path(path)
    if isinstance(write, (str, bytes)):
        content = write.encode() if isinstance(write, str) else write
        write = lambda f: f.write(content)  # noqa: E731
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def checked_output(out: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """``out`` as a Path once it is a file name in an existing, writable folder.

    With ``overwrite=False`` an existing file is refused too.
    """
    out = Path(out)
    if out.is_dir():
        raise FeatpipeError(f"{out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise FeatpipeError(f"{out} already exists; pass `overwrite=True` to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FeatpipeError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise FeatpipeError(f"output folder {parent} is not writable")
    return out


@contextlib.contextmanager
def exclusive_lock(out: Path) -> Iterator[None]:
    """Refuse a second writer on the same file (the OS drops the lock if we are killed)."""
    lock_path = out.with_name(out.name + ".lock")
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FeatpipeError(f"another featpipe process is writing {out}; wait for it to "
                                "finish or stop it") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()
            fcntl.flock(handle, fcntl.LOCK_UN)


def json_default(value):
    """``json.dumps(default=...)`` for NumPy scalars and arrays, paths, and anything else."""
    import numpy as np  # here: the command line's --help needs no NumPy

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)
