"""``python -m infra.stack``: see infra/stack/__init__.py."""

import sys

from infra.stack import main

sys.exit(main())
