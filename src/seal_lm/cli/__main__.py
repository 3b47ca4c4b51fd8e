"""``python -m seal_lm.cli``: the ``seal`` command, where its script is not on the PATH."""

import sys

from seal_lm.cli import main

sys.exit(main())
