import sys

from densemark.cli import main

sys.exit(main())
