"""``seaway-score``: the batch scorer a ScoringJob's pods run (the contract is in ``contract.py``).

Layout: ``plan`` is pure (units from a file listing, byte and row-group ranges, records, the
manifest, the termination message); ``reading`` turns a unit into bounded batches of rows;
``store`` is the only code that talks to S3, HTTP or the file system; ``run`` strings them
together for one pod; ``main`` reads the environment and turns every failure into an exit code
and a termination message.
"""
