"""``python -m featpipe`` runs the command line."""

import sys

from featpipe.cli import main

sys.exit(main())
