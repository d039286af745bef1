"""``python -m infra.stack``: the commands of infra/stack/cli.py."""

import sys

from infra.stack.cli import main

sys.exit(main())
