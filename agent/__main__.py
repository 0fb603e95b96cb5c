"""`python -m agent` is the same as the `faceagent` console script."""

import sys

from agent.cli import main

sys.exit(main())
