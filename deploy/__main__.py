"""`python -m deploy`: the same as the `flexhost` command."""

import sys

from deploy.cli import main

sys.exit(main())
