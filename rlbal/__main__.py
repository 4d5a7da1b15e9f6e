"""`python -m rlbal COMMAND ...` = the `rlbal` command (rlbal.cli)."""

import sys

from rlbal.cli import main

sys.exit(main())
