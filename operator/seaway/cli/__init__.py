"""The ``seaway`` command (also installed as ``kubectl-seaway``, so ``kubectl seaway ...`` works)."""
