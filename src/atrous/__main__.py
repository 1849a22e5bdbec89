"""``python -m atrous``: the same as the ``atrous`` console script."""

import sys

from .cli import main

sys.exit(main())
