import sys

from superb_redundancy.cli import main

sys.exit(main())
