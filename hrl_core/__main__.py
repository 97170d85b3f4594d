"""``python -m hrl_core ...`` = ``hrl ...``."""

import sys

from hrl_core.cli import main

sys.exit(main())
