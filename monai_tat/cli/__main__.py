"""`python -m monai_tat.cli` runs the `monai-tat` command line."""

import sys

from monai_tat.cli import main

sys.exit(main())
