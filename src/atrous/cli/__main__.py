"""``python -m atrous.cli``: the same as the ``atrous`` console script."""

import sys

from . import main

sys.exit(main())
