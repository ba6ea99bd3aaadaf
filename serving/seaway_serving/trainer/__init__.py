"""``seaway-train``: the built-in trainer a RetrainJob runs as a Kubernetes Job.

It lives beside the model server because it writes what the server reads: bundles are built with
``seaway_serving.bundle`` and checked with the server's loader before they are published, and the
incumbent is loaded through the same verified loader. Like the rest of ``seaway_serving`` it
imports nothing of the operator, kopf or the Kubernetes client (an import-linter contract).

Modules, from the outside in: ``main`` (CLI, exit codes, where the result goes) -> ``run`` (one
run, in order) -> ``store`` (fetch and publish), ``data`` (read and check columns),
``estimators`` (allow-listed import), ``splits``, ``scoring``, ``incumbent`` -> ``gate`` and
``result``, which are pure and import no scikit-learn, so the operator can parse results and
re-check a decision without it.
"""
