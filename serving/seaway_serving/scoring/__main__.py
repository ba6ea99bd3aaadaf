"""``python -m seaway_serving.scoring``: the same as the ``seaway-score`` command."""

from seaway_serving.scoring.main import main

main()
