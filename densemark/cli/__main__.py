"""``python -m densemark.cli``: the ``densemark`` command."""

import sys

from densemark.cli import main

sys.exit(main())
