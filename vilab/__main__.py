"""``python -m vilab``: the same as the ``vilab`` command."""

import sys

from vilab.cli import main

sys.exit(main())
