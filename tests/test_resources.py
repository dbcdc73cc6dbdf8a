"""featpipe.resources: the cores and the memory the process works with."""

import platform
import subprocess
import sys

import pytest

from featpipe.resources import available_cores

FREE_AFTER_USE = """
import sys, numpy as np
from featpipe.resources import return_freed_blocks_to_the_system
if sys.argv[1] == "set":
    assert return_freed_blocks_to_the_system()
def anonymous_mib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
big = np.ones(8 << 20, np.uint8); del big  # glibc raises its threshold to 8 MiB unless set
before = anonymous_mib()
blocks = [np.ones(4 << 20, np.uint8) for _ in range(10)]
pinned = np.ones(1 << 16, np.uint8)  # above the blocks: the heap cannot shrink past it
del blocks
print(round(anonymous_mib() - before))
"""


def test_available_cores_is_at_least_one():
    assert available_cores() >= 1


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
def test_freed_blocks_go_back_to_the_system_once_the_threshold_is_set():
    def kept_mib(mode):
        done = subprocess.run([sys.executable, "-c", FREE_AFTER_USE, mode], check=True,
                              capture_output=True, text=True)
        return int(done.stdout)

    assert kept_mib("default") >= 30  # glibc's default keeps the freed 40 MiB in the heap
    assert kept_mib("set") <= 2
