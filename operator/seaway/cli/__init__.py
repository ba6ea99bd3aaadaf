"""The ``seaway`` command, also installed as ``kubectl-seaway`` (``kubectl seaway ...``)."""
