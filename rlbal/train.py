"""`python -m rlbal.train RECIPE [key.sub=value ...]`: the entry point that `accelerate launch -m rlbal.train` and
`ray job submit ... -- python -m rlbal.train` use. Same arguments as `rlbal train`."""

from __future__ import annotations

import sys

from rlbal.cli import train_main
from rlbal.errors import guarded

if __name__ == "__main__":
    sys.exit(guarded(lambda argv: train_main(argv, prog="python -m rlbal.train"), sys.argv[1:]))
