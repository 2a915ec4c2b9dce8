"""``python -m jobpersist``: the ``jobpersist`` command."""

import sys

from jobpersist.cli import main

sys.exit(main())
