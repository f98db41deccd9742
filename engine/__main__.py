"""`python -m engine` is the `yikatong` command."""

import sys

from engine.cli import main

sys.exit(main())
