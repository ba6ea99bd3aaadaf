"""``python -m seaway_serving`` is ``seaway-serve``."""

from seaway_serving.server import main

main()
