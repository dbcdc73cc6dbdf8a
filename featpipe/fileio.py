"""Files written safely: atomic replacement, checked output paths, one writer per store, JSON.

Every file featpipe writes (stores, models, reports, predictions, benchmark pages) goes through
:func:`atomic_write`: it is written under a temporary name in the same folder and renamed over
the target only when complete, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from featpipe.errors import FeatpipeError


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object] | bytes | str,
                 *, mode: int = 0o644) -> Path:
    """Write ``path`` atomically; ``write`` is the content or a function given the binary file.

    The file gets ``mode`` less the process's umask, as ``open`` would give it (temporary
    files are created 0600).

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
        os.chmod(tmp, mode & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process's umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def private_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder nobody but this user can write into: created 0700 when absent;
    an existing one must be owned by the user and hold no symbolic link and nothing that
    others may write.

    For caches whose files are loaded as code (joblib's pickles): a folder others can write
    is code they would run in this process. It cannot vouch for content the user put there
    from elsewhere (an unpacked archive) — hence no cache persists unless asked for.
    """
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    uid = os.getuid()
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            info = os.lstat(name)
            problem = ("is a symbolic link" if stat.S_ISLNK(info.st_mode)
                       else "belongs to another user" if info.st_uid != uid
                       else "is writable by others" if info.st_mode & 0o022 else None)
            if problem:
                raise FeatpipeError(
                    f"cache folder {path} is not private: {name} {problem}; its files are "
                    "loaded as code, so use a folder only you can write (chmod -R go-w) or none")
    return path


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
