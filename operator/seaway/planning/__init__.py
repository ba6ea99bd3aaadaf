"""Pure planning: (spec, status, observations, now) -> what the cluster and status should become.

Nothing here reads the clock, the environment or the network; the handlers pass ``now`` and the
observed state in, and act on the plan that comes out. That keeps the rollout logic testable with
plain tables and makes a restarted operator compute the same plan from the same status.
"""
