"""The rollout step machine: one pass from (spec, status, observations, now) to a plan.

A pass is a short ordered list of decisions, each a small function, ending in one new status:

1. which revision the spec wants (creating its entry, or reusing an equal earlier one);
2. the declarative actions (promote, promoteFull, abort, retry), each token handled once;
3. the rollout itself: hold, start a canary, walk its steps, promote, or revert;
4. conditions, weights and replica counts derived from the result.

The handlers apply the plan's replica counts and weights first and write the status last, so a
crash anywhere repeats the same pass from the same status: the plan is a function of its inputs.

Times that something is measured from (a timed pause, the progress deadline) are not the pass's
``now``: a pass whose requests stalled on a frozen API server would date them back by the stall
and so shorten, or skip, the bake. The plan only says that they start; the handler fills them in
with :func:`confirmed` once the pass's writes returned, i.e. once the weight is known live.
Time during which the operator could not reach the API server (``outages``) does not count.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from seaway import conditions
from seaway.api.modeldeployment import (
    Analysis,
    AnalysisStatus,
    ExperimentStatus,
    HandledActions,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RevisionStatus,
    Step,
    VariantStatus,
    WeightStatus,
)
from seaway.planning import analysis
from seaway.planning import experiment as experiments
from seaway.planning import revisions as revs
from seaway.planning.durations import format_precise, format_time, parse_duration, parse_time

#: How often a pass is repeated while a rollout waits on something that sends no event.
POLL_SECONDS = 10.0


@dataclass(frozen=True)
class Observed:
    """What the cluster shows for one revision's Deployment."""

    ready: int = 0
    #: The Deployment's status describes its latest spec (``status.observedGeneration`` has caught
    #: up). A status that has not is stale: a revision just scaled up from zero may still show
    #: the ready pods it had before, which must not start its traffic nor, a moment later,
    #: revert it as "no longer ready".
    current: bool = True


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the ModelDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    """What one pass decided."""

    status: ModelDeploymentStatus
    #: Replicas for every revision whose children must exist (0 keeps a standby at zero).
    replicas: dict[int, int] = field(default_factory=dict)
    #: Traffic percent per revision; absent or empty means "leave traffic as it is".
    weights: dict[int, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: Webhook payloads to send (revert, failure, promotion).
    notifications: list[dict[str, object]] = field(default_factory=list)
    #: Revisions whose children should be deleted (pruned from history).
    pruned: list[int] = field(default_factory=list)
    #: The revision that gets copies of live traffic (spec.traffic.mirror), when it can.
    mirror: int | None = None
    #: Seconds until a pass is needed even if nothing changes; None: only on change.
    requeue_after: float | None = None
    #: The canary's rollout starts with this pass: its deadline counts from :func:`confirmed`.
    starts_canary: bool = False
    #: The pause this pass reached starts once its weight is live (see :func:`confirmed`);
    #: ``pause_duration`` is None for a pause that waits for a promote.
    starts_pause: bool = False
    pause_duration: timedelta | None = None


def confirmed(result: Plan, at: datetime) -> None:
    """Stamp what starts with this pass at ``at``, a moment after all its writes returned.

    ``at`` is read after the weights were written (or found live) and the canary's Deployment
    applied, so a bake or a deadline measured from it is never shorter than written.
    """
    st = result.status
    if st.canary_revision is None:
        return
    if result.starts_canary:
        st.canary_started_at = format_precise(at)
    if result.starts_pause:
        st.pause_started_at = format_precise(at)
        duration = result.pause_duration
        st.pause_ends_at = format_precise(at + duration) if duration is not None else None
        if duration is not None:
            current = result.requeue_after
            seconds = duration.total_seconds()
            result.requeue_after = seconds if current is None else min(current, seconds)


def lost_time(
    outages: Sequence[tuple[datetime, datetime]], since: datetime, now: datetime
) -> timedelta:
    """How long, between ``since`` and ``now``, the operator could not reach the API server."""
    total = timedelta(0)
    for began, ended in outages:
        overlap = min(ended, now) - max(began, since)
        if overlap > timedelta(0):
            total += overlap
    return total


def steps_hash(steps: list[Step]) -> str:
    """Identifies a step list, so an edited list restarts the canary's steps."""
    payload = json.dumps([s.to_wire() for s in steps], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class _Pass:
    """State of one pass; methods are the sub-steps, in order."""

    def __init__(
        self,
        *,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        generation: int,
        model: revs.ResolvedModel | None,
        observed: dict[int, Observed],
        now: datetime,
        blocked: tuple[str, str] | None,
        measurement: analysis.Measurement | None,
        figures: list[experiments.VariantFigures] | None,
        outages: Sequence[tuple[datetime, datetime]],
    ) -> None:
        self.outages = outages
        self.measurement = measurement
        self.figures = figures
        self.experiment_revisions: set[int] = set()
        self.spec = spec
        self.st = status.model_copy(deep=True)
        self.generation = generation
        self.model = model
        self.observed = observed
        self.now = now
        self.now_s = format_time(now)
        self.plan = Plan(status=self.st)
        self.handled = self.st.handled_actions or HandledActions()
        self.new_tokens: set[str] = set()
        #: (reason, message) for Ready=False: the spec cannot be realised as written.
        self.problem: tuple[str, str] | None = blocked
        self.problem_announced = False

    # -- helpers -------------------------------------------------------------------------------
    def ready(self, number: int | None) -> int:
        return self.observed.get(number, Observed()).ready if number is not None else 0

    def revision(self, number: int | None) -> RevisionStatus | None:
        return revs.find_by_number(self.st.revisions, number) if number is not None else None

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))

    def requeue(self, seconds: float, floor: float = 1.0) -> None:
        seconds = max(seconds, floor)
        current = self.plan.requeue_after
        self.plan.requeue_after = seconds if current is None else min(current, seconds)

    # -- 1. desired revision -------------------------------------------------------------------
    def desired(self) -> RevisionStatus | None:
        if self.problem is not None:
            return None
        if self.spec.rollback_to is not None:
            wanted = self.revision(self.spec.rollback_to.revision)
            if wanted is None:
                self.problem = (
                    "InvalidSpec",
                    f"rollbackTo.revision {self.spec.rollback_to.revision} is not in"
                    " status.revisions (it never existed or was pruned)",
                )
            return wanted
        if self.model is None:
            self.problem = (
                "WaitingForModel",
                f"RetrainJob {self.spec.model.from_retrain_job} has not promoted a model yet",
            )
            return None
        updated, revision, created = revs.ensure_revision(
            self.st.revisions, self.model, self.spec.server, now=self.now_s
        )
        self.st.revisions = updated
        if created:
            self.event(
                "Normal",
                "RevisionCreated",
                f"Created revision {revision.number} for {revision.model_uri}"
                f" ({revision.digest or 'unverified'})",
            )
        return revision

    # -- 2. actions ----------------------------------------------------------------------------
    def take_actions(self) -> None:
        actions = self.spec.actions
        if actions is None:
            return
        for name in ("promote", "promote_full", "abort", "retry"):
            token = getattr(actions, name)
            if token is not None and token != getattr(self.handled, name):
                self.new_tokens.add(name)
                setattr(self.handled, name, token)
        self.st.handled_actions = self.handled

    # -- 3. rollout ----------------------------------------------------------------------------
    def run(self) -> Plan:
        desired = self.desired()
        self.take_actions()
        if self.spec.paused:
            self.hold_paused()
        elif desired is None:
            self.serve_stable()
        else:
            if "retry" in self.new_tokens and desired.fate in ("Failed", "RolledBack"):
                desired.fate, desired.reason, desired.message = "Pending", None, None
                desired.finished_at = None
                desired.ready_at = None
                self.event("Normal", "RetryRequested", f"Retrying revision {desired.number}")
            if desired.number == self.st.stable_revision:
                self.supersede_canary(None)
                self.serve_stable()
            elif desired.fate in ("Failed", "RolledBack"):
                self.supersede_canary(None)
                self.serve_stable()
                self.problem_for_rejected(desired)
            else:
                self.roll_out(desired)
        self.run_experiment()
        self.run_mirror()
        self.finish()
        return self.plan

    def run_mirror(self) -> None:
        """Keep the mirror's revision running with live weight 0, unless it failed."""
        mirror = self.spec.traffic.mirror if self.spec.traffic is not None else None
        if mirror is None or self.spec.paused:
            return
        target = self.revision(mirror.revision)
        if target is None:
            self.problem = (
                "InvalidSpec",
                f"mirror revision {mirror.revision} is not in status.revisions",
            )
            return
        if target.fate in ("Failed", "RolledBack"):
            return  # a rejected revision gets no traffic at all, not even copies
        self.plan.mirror = mirror.revision
        if self.plan.weights and mirror.revision not in self.plan.weights:
            self.plan.weights[mirror.revision] = 0

    def run_experiment(self) -> None:
        """An experiment decides the split among its variants (see planning/experiment.py)."""
        spec = self.spec.traffic.experiment if self.spec.traffic is not None else None
        if spec is None:
            self.st.experiment = None
            return
        if self.spec.paused:
            return
        missing = [v.revision for v in spec.variants if self.revision(v.revision) is None]
        if missing:
            self.problem = (
                "InvalidSpec",
                f"experiment variants {missing} are not in status.revisions",
            )
            return
        split = experiments.weights(spec, self.st.experiment)
        if self.figures is not None:
            self.st.experiment, winner = experiments.record(
                spec, self.st.experiment, self.figures, split, self.now
            )
            if winner is not None:
                split = {winner: 100}
                message = (
                    f"Revision {winner} won the {spec.type} with confidence"
                    f" {self.st.experiment.confidence}; it now serves 100%"
                )
                self.event("Normal", "ExperimentConcluded", message)
                self.plan.notifications.append(
                    {"event": "ExperimentConcluded", "revision": winner, "message": message}
                )
        elif self.st.experiment is None:
            self.st.experiment = ExperimentStatus(
                variants=[VariantStatus(revision=r, weight=w) for r, w in split.items()]
            )
        self.experiment_revisions = set(split)
        waiting = sorted(r for r, w in split.items() if w > 0 and self.ready(r) == 0)
        if waiting:
            # A variant gets traffic only once it has a ready pod (a retired revision is scaled
            # up first); until then the rollout's own weights stay in force.
            self.requeue(2.0)
            return
        self.plan.weights = split
        if self.st.experiment.winner is None:
            self.requeue(experiments.MEASURE_EVERY.total_seconds())

    def hold_paused(self) -> None:
        """``paused: true`` freezes traffic and replicas as they are."""
        for r in self.st.revisions:
            if r.number in (self.st.stable_revision, self.st.canary_revision):
                self.plan.replicas[r.number] = self.spec.server.replicas

    def supersede_canary(self, replacement: int | None) -> None:
        canary = self.revision(self.st.canary_revision)
        if canary is None or canary.number == replacement:
            return
        if canary.fate == "Canary":
            canary.fate, canary.reason, canary.finished_at = (
                "Superseded",
                "NewerTemplate",
                self.now_s,
            )
            self.event("Normal", "RevisionSuperseded", f"Revision {canary.number} was superseded")
        self.clear_canary()

    def serve_stable(self) -> None:
        stable = self.st.stable_revision
        if stable is not None:
            self.plan.weights = {stable: 100}

    def problem_for_rejected(self, desired: RevisionStatus) -> None:
        serving = self.st.stable_revision
        message = f"desired revision {desired.number} rejected: {desired.reason}"
        if desired.message:
            message += f" ({desired.message})"
        message += (
            f"; serving revision {serving}" if serving is not None else "; no revision is serving"
        )
        self.st.message = message
        if serving is None:
            # Already announced by the revert's own Event; no second Event for the condition.
            self.problem = (desired.reason or "RevisionFailed", message)
            self.problem_announced = True

    def roll_out(self, desired: RevisionStatus) -> None:
        self.supersede_canary(desired.number)
        if self.st.canary_revision != desired.number:
            self.st.canary_revision = desired.number
            self.st.canary_started_at = None
            self.plan.starts_canary = True
            self.st.step_started_at = self.now_s
            self.st.current_step_index = 0
            self.st.steps_hash = None
            desired.fate = "Canary"
            # a revision coming back (its template applied again) starts anew: no stale reason
            desired.reason, desired.message = None, None
            desired.ready_at = None  # a revision coming back from zero must become ready anew
            desired.finished_at = None
            self.st.analysis = None
            self.event("Normal", "RolloutStarted", f"Started rolling out revision {desired.number}")
        if self.st.canary_started_at is None:
            self.plan.starts_canary = True
        observed = self.observed.get(desired.number, Observed())
        ready = self.ready(desired.number)
        if ready > 0 and desired.ready_at is None and observed.current:
            desired.ready_at = self.now_s
        deadline = (
            self.spec.rollout.progress_deadline_seconds if self.spec.rollout is not None else 600
        )
        # Until the pass that starts the canary has written it, the deadline has not begun.
        started = parse_time(self.st.canary_started_at) if self.st.canary_started_at else self.now
        elapsed = (self.now - started - lost_time(self.outages, started, self.now)).total_seconds()
        if "abort" in self.new_tokens:
            self.revert(desired, "RolledBack", "Aborted", "the rollout was aborted by the user")
            return
        if desired.ready_at is None and elapsed >= deadline:
            self.revert(
                desired,
                "Failed",
                "ProgressDeadlineExceeded",
                f"no ready pod within progressDeadlineSeconds ({deadline}s)",
            )
            return
        if desired.ready_at is not None and ready == 0 and observed.current:
            self.revert(desired, "Failed", "PodsNotReady", "its pods stopped being ready")
            return
        if desired.ready_at is None:
            self.requeue(deadline - elapsed if observed.current else 1.0)
        if self.analyse(desired):
            return
        # until the revision is known ready (from a current status) it gets no traffic
        self.walk(desired, ready if desired.ready_at is not None else 0)

    def analysis_spec(self) -> Analysis | None:
        rollout = self.spec.rollout
        if rollout is None or rollout.strategy != "Canary":
            return None
        return rollout.analysis

    def analyse(self, desired: RevisionStatus) -> bool:
        """Record a measurement of the canary, if one was taken; True when it reverted."""
        spec = self.analysis_spec()
        if spec is None:
            return False
        state = (
            self.st.analysis
            if self.st.analysis and self.st.analysis.revision == desired.number
            else None
        )
        if self.measurement is not None:
            state = analysis.record(spec, state, desired.number, self.measurement, self.now)
            self.st.analysis = state
            if state.failures >= spec.failure_limit:
                why = (
                    f"analysis failed {state.failures} time(s) (failureLimit {spec.failure_limit}):"
                    f" {state.message}"
                )
                self.revert(desired, "Failed", "AnalysisFailed", why)
                return True
            if state.no_data_in_a_row >= spec.no_data_limit:
                why = (
                    f"no usable metrics for {state.no_data_in_a_row} intervals"
                    f" (noDataLimit {spec.no_data_limit}): {state.message}"
                )
                self.revert(desired, "Failed", "AnalysisInconclusive", why)
                return True
        if state is None and (self.st.canary_weight or 0) > 0:
            # The canary has had traffic since the last pass: the first interval starts now.
            state = AnalysisStatus(revision=desired.number, started_at=format_precise(self.now))
            self.st.analysis = state
        if state is not None:
            self.requeue(max(analysis.seconds_until_due(spec, state, self.now), 1.0))
        return False

    def analysis_allows(self, *, promotion: bool) -> bool:
        """Steps hold on missing data; promotion needs a passing measurement."""
        spec = self.analysis_spec()
        if spec is None:
            return True
        state = self.st.analysis
        if state is None or state.revision != self.st.canary_revision:
            return not promotion
        if promotion:
            return state.last_result == "Pass"
        return state.last_result != "NoData"

    def walk(self, desired: RevisionStatus, ready: int) -> None:
        stable = self.st.stable_revision
        scaling = self.spec.server.autoscaling
        # With an autoscaler the HPA owns the count: "fully ready" is its minimum.
        replicas = scaling.min_replicas if scaling is not None else self.spec.server.replicas
        fully_ready = ready >= max(replicas, 1)
        strategy = self.spec.rollout.strategy if self.spec.rollout is not None else "Immediate"
        skip = "promote_full" in self.new_tokens or (
            self.spec.rollback_to is not None and self.spec.rollback_to.skip_steps
        )
        if stable is None or strategy == "Immediate" or skip:
            if ready > 0 and (fully_ready or strategy == "Immediate" or stable is None):
                self.promote(desired)
            else:
                self.plan.weights = {stable: 100} if stable is not None else {}
                self.requeue(POLL_SECONDS)
            return
        if strategy == "BlueGreen":
            if fully_ready:
                self.promote(desired)
            else:
                self.plan.weights = {stable: 100}
                self.requeue(POLL_SECONDS)
            return
        steps = (self.spec.rollout.steps or []) if self.spec.rollout is not None else []
        self.walk_steps(desired, steps, ready, fully_ready)

    def walk_steps(
        self, desired: RevisionStatus, steps: list[Step], ready: int, fully_ready: bool
    ) -> None:
        stable = self.st.stable_revision
        assert stable is not None
        hash_ = steps_hash(steps)
        if self.st.steps_hash != hash_:
            if self.st.steps_hash is not None:
                self.event("Normal", "StepsChanged", "The step list changed; restarted at step 0")
            self.st.steps_hash = hash_
            self.st.current_step_index = 0
            self.st.step_started_at = self.now_s
            self.end_pause()
        index = self.st.current_step_index or 0
        promote_once = "promote" in self.new_tokens
        while index < len(steps) and self.analysis_allows(promotion=False):
            step = steps[index]
            if step.set_weight is not None:
                if ready == 0:
                    self.requeue(POLL_SECONDS)
                    break
                index += 1
                self.st.step_started_at = self.now_s
                self.end_pause()
                continue
            assert step.pause is not None
            if promote_once:
                promote_once = False
                index += 1
                self.st.step_started_at = self.now_s
                self.end_pause()
                continue
            duration = parse_duration(step.pause.duration) if step.pause.duration else None
            if self.st.pause_started_at is None:
                # The weight before this pause is live once this pass's writes return.
                self.plan.starts_pause = True
                self.plan.pause_duration = duration
                if duration is not None:
                    self.requeue(duration.total_seconds())
                break
            if duration is None:
                break
            began = parse_time(self.st.pause_started_at)
            ends = began + duration + lost_time(self.outages, began, self.now)
            self.st.pause_ends_at = format_precise(ends)
            remaining = (ends - self.now).total_seconds()
            if remaining > 0:
                self.requeue(remaining, floor=0.05)  # a pause ends on time, not a second late
                break
            index += 1
            self.st.step_started_at = self.now_s
            self.end_pause()
        if index != self.st.current_step_index:
            self.event("Normal", "StepReached", f"Revision {desired.number} at step {index}")
        self.st.current_step_index = index
        weight = 0
        for step in steps[:index]:
            if step.set_weight is not None:
                weight = step.set_weight
        if ready == 0:
            weight = 0
        if index >= len(steps):
            if fully_ready and self.analysis_allows(promotion=True):
                self.promote(desired)
                return
            self.requeue(POLL_SECONDS)
        self.plan.weights = {stable: 100 - weight, desired.number: weight}

    def clear_canary(self) -> None:
        self.st.canary_revision = None
        self.st.current_step_index = None
        self.st.steps_hash = None
        self.st.step_started_at = None
        self.st.canary_started_at = None
        self.plan.starts_canary = False
        self.end_pause()

    def end_pause(self) -> None:
        self.st.pause_started_at = None
        self.st.pause_ends_at = None
        self.plan.starts_pause = False
        self.plan.pause_duration = None

    def promote(self, desired: RevisionStatus) -> None:
        previous = self.revision(self.st.stable_revision)
        if previous is not None and previous.number != desired.number:
            previous.fate, previous.finished_at = "Retired", self.now_s
            previous.reason = "Replaced"
        desired.fate, desired.reason, desired.message = "Stable", None, None
        self.st.stable_revision = desired.number
        self.clear_canary()
        self.plan.weights = {desired.number: 100}
        self.event("Normal", "Promoted", f"Revision {desired.number} is stable")
        self.plan.notifications.append(
            {
                "event": "Promoted",
                "revision": desired.number,
                "message": f"revision {desired.number} is stable",
            }
        )

    def revert(self, desired: RevisionStatus, fate: str, reason: str, why: str) -> None:
        stable = self.st.stable_revision
        desired.fate = "Failed" if fate == "Failed" else "RolledBack"
        desired.reason, desired.message, desired.finished_at = reason, why, self.now_s
        self.clear_canary()
        self.plan.weights = {stable: 100} if stable is not None else {}
        target = f"revision {stable}" if stable is not None else "no revision (none is stable yet)"
        message = f"Reverted to {target}: revision {desired.number} {reason}: {why}"
        self.event("Warning", "RolloutAborted" if reason == "Aborted" else "RolledBack", message)
        self.plan.notifications.append(
            {
                "event": "RolledBack",
                "revision": desired.number,
                "stableRevision": stable,
                "reason": reason,
                "message": message,
            }
        )
        self.problem_for_rejected(desired)

    # -- 4. derived status ---------------------------------------------------------------------
    def finish(self) -> None:
        st, spec = self.st, self.spec
        replicas = spec.server.replicas
        if not self.plan.replicas:
            for r in st.revisions:
                active = r.number in (st.stable_revision, st.canary_revision)
                active = active or r.number in self.experiment_revisions
                active = active or r.number == self.plan.mirror
                self.plan.replicas[r.number] = replicas if active else 0
        if self.plan.weights:
            st.weights = [
                WeightStatus(revision=n, weight=w) for n, w in sorted(self.plan.weights.items())
            ]
        live = {w.revision: w.weight for w in st.weights}
        st.canary_weight = live.get(st.canary_revision) if st.canary_revision else None
        keep = {n for n in (st.stable_revision, st.canary_revision) if n is not None}
        if spec.rollback_to is not None:
            keep.add(spec.rollback_to.revision)
        st.revisions, self.plan.pruned = revs.prune(st.revisions, spec.revision_history_limit, keep)
        for number in self.plan.pruned:
            self.plan.replicas.pop(number, None)
        self.conditions()
        st.observed_generation = self.generation

    def conditions(self) -> None:
        st = self.st
        rejected = next(
            (
                r
                for r in st.revisions
                if r.fate in ("Failed", "RolledBack") and r.number == self._desired_number()
            ),
            None,
        )
        stable_ready = self.ready(st.stable_revision) > 0
        if self.problem is not None:
            ready = ("False", *self.problem)
            previous = conditions.find(st.conditions, conditions.READY)
            if not self.problem_announced and (
                previous is None or previous.reason != self.problem[0]
            ):
                self.event("Warning", self.problem[0], self.problem[1])
        elif st.stable_revision is None:
            ready = ("False", "NoStableRevision", "the first revision is not ready yet")
        elif not stable_ready:
            ready = (
                "False",
                "StablePodsNotReady",
                f"revision {st.stable_revision} has no ready pod",
            )
        else:
            ready = ("True", "Available", f"revision {st.stable_revision} is serving")
        if self.spec.paused:
            progressing = ("Unknown", "Paused", "spec.paused is true")
        elif st.canary_revision is not None:
            progressing = (
                "True",
                "RolloutInProgress",
                f"revision {st.canary_revision} at step {st.current_step_index},"
                f" weight {st.canary_weight or 0}%",
            )
        elif rejected is not None:
            progressing = ("False", "RolloutAborted", st.message or "")
        else:
            progressing = ("False", "RolloutComplete", "no rollout in progress")
        if rejected is not None:
            degraded = ("True", rejected.reason or "RevisionFailed", st.message or "")
        else:
            degraded = ("False", "Healthy", "")
            st.message = ready[2] if self.problem is None else self.problem[1]
        for type_, (status, reason, message) in (
            (conditions.READY, ready),
            (conditions.PROGRESSING, progressing),
            (conditions.DEGRADED, degraded),
        ):
            st.conditions = conditions.set_condition(
                st.conditions,
                type_,
                status,  # type: ignore[arg-type]
                reason,
                message,
                now=self.now_s,
                generation=self.generation,
            )

    def _desired_number(self) -> int | None:
        if self.spec.rollback_to is not None:
            return self.spec.rollback_to.revision
        if self.model is None:
            return None
        found = revs.find_by_hash(
            self.st.revisions, revs.template_hash(self.model, self.spec.server)
        )
        return found.number if found else None


def plan(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    *,
    generation: int,
    model: revs.ResolvedModel | None,
    observed: dict[int, Observed],
    now: datetime,
    blocked: tuple[str, str] | None = None,
    measurement: analysis.Measurement | None = None,
    figures: list[experiments.VariantFigures] | None = None,
    outages: Sequence[tuple[datetime, datetime]] = (),
) -> Plan:
    """One reconcile pass for a ModelDeployment, without any I/O.

    ``blocked`` is a problem found outside the spec (a missing Secret, an unknown RetrainJob):
    no new rollout starts, the stable revision keeps serving, and Ready is False with its reason.
    ``measurement`` is the canary's metrics over the last analysis interval, when one was due;
    ``figures`` the router's per-variant experiment figures, when they were due;
    ``outages`` the (start, end) times during which the operator could not reach the API
    server: they do not count towards a pause or the progress deadline.
    """
    return _Pass(
        spec=spec,
        status=status,
        generation=generation,
        model=model,
        observed=observed,
        now=now,
        blocked=blocked,
        measurement=measurement,
        figures=figures,
        outages=outages,
    ).run()
