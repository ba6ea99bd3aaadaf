"""The model report: one self-contained HTML page about a ModelDeployment, for people who do not
use kubectl.

Pure, like ``planning``: the CLI (``seaway report``, operator/seaway/cli/report.py) reads the
API server and Prometheus and hands plain dictionaries to :mod:`seaway.report.assemble`, which
builds the data model of :mod:`seaway.report.model`; :mod:`seaway.report.render` turns that into
HTML with charts drawn by :mod:`seaway.report.svg`, and :mod:`seaway.report.summary` into the
JSON summary a webhook takes. Nothing here reads the clock, the network or the environment, so
every figure on the page can be checked by a unit test against the inputs that made it.
"""
