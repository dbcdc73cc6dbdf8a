"""``python -m featpipe.cli`` runs the command line."""

import sys

from featpipe.cli import main

sys.exit(main())
