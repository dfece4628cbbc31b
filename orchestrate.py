#!/usr/bin/env python3
"""orchestrate.py: run and schedule the Campaign cube aggregates (campaign_cubes/cli.py).

The same program as the `campaign-cubes` command that `pip install .` provides;
`./orchestrate.py --help` lists the commands and the exit codes.
"""

import sys

from campaign_cubes.cli import main

if __name__ == "__main__":
    sys.exit(main())
