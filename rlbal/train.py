"""`python -m rlbal.train RECIPE [key.sub=value ...]`: the entry point that `accelerate launch -m rlbal.train` and
`ray job submit ... -- python -m rlbal.train` use. Same arguments as `rlbal train`."""
from __future__ import annotations

import sys

from rlbal.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(prog="python -m rlbal.train"))
