"""`python -m chatclient`: the terminal chat (see chatclient/cli.py)."""

import sys

from chatclient.cli import main

sys.exit(main())
