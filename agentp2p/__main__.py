import sys

from agentp2p.cli import main

sys.exit(main())
