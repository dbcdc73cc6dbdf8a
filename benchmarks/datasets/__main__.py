"""``python -m benchmarks.datasets``: see :mod:`benchmarks.datasets`."""

import sys

from benchmarks.datasets.registry import main

sys.exit(main())
