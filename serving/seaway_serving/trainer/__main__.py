"""``python -m seaway_serving.trainer`` is ``seaway-train``."""

from seaway_serving.trainer.main import main

main()
