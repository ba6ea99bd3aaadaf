"""kopf glue: watch events only enqueue work; one reconcile per object runs at a time.

Handlers are kopf *event* handlers, so kopf keeps no state of its own on the objects (no
progress annotations, no finalizers): everything a restarted operator needs is in ``status``.
"""
