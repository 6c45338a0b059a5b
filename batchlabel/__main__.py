import sys

from batchlabel.cli import main

sys.exit(main())
