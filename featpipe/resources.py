"""What this machine offers the process: CPU cores it may run on."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it), at least 1.

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Blocks of at least this many bytes are mapped (and unmapped when freed) by glibc's malloc.
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def return_freed_blocks_to_the_system(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc's ``malloc`` map every block of ``threshold`` bytes or more on its own, so
    that freeing it returns the memory to the system at once. True when set (glibc only).

    By default glibc raises its mapping threshold to the size of each mapped block freed (up
    to 32 MiB): after the first fold's arrays are freed, the next ones come from the heap of
    the thread that allocates them, whose freed blocks stay in the process. A fit of the
    ``fne`` recipe on 2,000 x 3,120 features (5 folds on two threads) peaked 100 MiB (4x the
    features) higher without this, in the same time. A process-wide setting: the command
    line sets it for ``fit``; a program using the library may set it itself or export
    ``MALLOC_MMAP_THRESHOLD_``.
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
