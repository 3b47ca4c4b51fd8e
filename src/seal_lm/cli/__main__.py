"""``python -m seal_lm.cli``: the ``seal`` command without the script on the PATH."""

import sys

from seal_lm.cli import main

sys.exit(main())
