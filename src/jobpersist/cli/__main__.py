"""``python -m jobpersist.cli``: the ``jobpersist`` command."""

import sys

from jobpersist.cli import main

sys.exit(main())
