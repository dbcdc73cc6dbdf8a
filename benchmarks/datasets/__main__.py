"""``python -m benchmarks.datasets``: see :mod:`benchmarks.datasets`."""

import sys

from benchmarks.datasets.prepare import main

sys.exit(main())
