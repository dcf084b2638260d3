"""``python -m inference serve``: the same as the ``model-serve`` console script."""

import sys

from inference.entrypoint import main

sys.exit(main())
