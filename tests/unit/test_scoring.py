"""The ScoringJob machine without a cluster: resolving the model, the Job, progress, the pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from seaway import conditions
from seaway.api.modeldeployment import Server
from seaway.api.scoringjob import ScoringJobSpec, ScoringJobStatus
from seaway.planning import children, scoring
from seaway.planning.revisions import ResolvedModel
from seaway_serving import contract

T0 = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
UID = "5b1f0c9e-0000-4000-8000-000000000001"


def spec(**extra: Any) -> ScoringJobSpec:
    body: dict[str, Any] = {
        "model": {"modelDeployment": "churn"},
        "input": {"uri": "s3://data/customers/", "keyColumns": ["id"], "secretRef": {"name": "s"}},
        "output": {"uri": "s3://scores/churn/", "secretRef": {"name": "out"}},
        "parallelism": 3,
    }
    body.update(extra)
    return ScoringJobSpec.model_validate(body)


def template(**server: Any) -> dict[str, Any]:
    """A revision's frozen Pod template, as the ModelDeployment reconciler renders it."""
    model = ResolvedModel(uri="s3://models/churn/v2/", format="sklearn-joblib", digest=DIGEST,
                          allow_unverified=False, secret_name="store")  # fmt: skip
    body = {"image": "registry.example/seaway-server:0.2.0", **server}
    return children.pod_template(md_name="churn", number=2, model=model,
                                 server=Server.model_validate(body))  # fmt: skip


def resolved() -> scoring.Model:
    model = scoring.model_from_template(template(), md_name="churn", revision=2)
    assert isinstance(model, scoring.Model)
    return model


def report(index: int, units: list[int], rows: int, reason: str = "Succeeded",
           **extra: Any) -> str:  # fmt: skip
    return json.dumps({"index": index, "unitsTotal": 6, "unitsDone": units, "unitsSkipped": [],
                       "rows": rows, "seconds": 1.5, "revision": 2, "digest": DIGEST,
                       "reason": reason, "message": extra.pop("message", ""), **extra})  # fmt: skip


# -- resolving ----------------------------------------------------------------------------------
def test_the_model_is_read_from_the_revisions_frozen_template() -> None:
    model = scoring.model_from_template(
        template(env=[{"name": "OMP_NUM_THREADS", "value": "1"},
                      {"name": "SEAWAY_S3_ENDPOINT", "value": "http://minio:9000"},
                      {"name": "SEAWAY_TRUSTED_TYPES", "value": "numpy.dtype"},
                      {"name": "SEAWAY_MAX_BATCH_SIZE", "value": "64"}]),
        md_name="churn", revision=2,
    )  # fmt: skip
    assert isinstance(model, scoring.Model)
    assert (model.uri, model.format, model.digest, model.image) == (
        "s3://models/churn/v2/", "sklearn-joblib", DIGEST, "registry.example/seaway-server:0.2.0"
    )
    assert model.secrets == ("store",)
    assert not model.allow_unverified
    # the store's endpoint and plain variables travel; the server's own settings do not
    assert dict(model.extra_env) == {"OMP_NUM_THREADS": "1",
                                     "SEAWAY_S3_ENDPOINT": "http://minio:9000",
                                     "SEAWAY_TRUSTED_TYPES": "numpy.dtype"}  # fmt: skip


def test_a_template_without_a_server_container_is_a_final_refusal() -> None:
    found = scoring.model_from_template({"spec": {"containers": []}}, md_name="churn", revision=4)
    assert isinstance(found, scoring.Unresolved) and found.final
    assert found.reason == "RevisionNotFound"


@pytest.mark.parametrize(
    ("status", "wanted", "expected"),
    [
        ({"stableRevision": 3, "revisions": [{"number": 2}, {"number": 3}]}, None, 3),
        ({"stableRevision": 3, "revisions": [{"number": 2}, {"number": 3}]}, 2, 2),
        ({"stableRevision": 3, "revisions": [{"number": 2}, {"number": 3}]}, 7,
         "churn has no revision 7 in its history (revisions: 2, 3)"),
        ({"revisions": [{"number": 1}]}, None, "waiting for churn to have a stable revision"),
    ],
)  # fmt: skip
def test_pick_revision(status: dict[str, Any], wanted: int | None, expected: Any) -> None:
    picked = scoring.pick_revision(status, md_name="churn", wanted=wanted)
    if isinstance(expected, int):
        assert picked == expected
    else:
        assert isinstance(picked, scoring.Unresolved) and picked.message == expected
        assert picked.final == (wanted is not None)


def test_a_retrainjobs_promoted_bundle_is_read_with_its_output_secret() -> None:
    rj = {"metadata": {"name": "weekly"},
          "spec": {"modelDeployment": "churn", "output": {"uri": "s3://m/", "secretRef":
                                                          {"name": "store"}}},
          "status": {"promoted": {"run": 4, "uri": "s3://m/run-4/", "digest": DIGEST,
                                  "format": "sklearn-joblib"}}}  # fmt: skip
    model = scoring.model_from_retrainjob(rj, default_image="img:default")
    assert isinstance(model, scoring.Model)
    assert (model.uri, model.digest, model.revision, model.image) == (
        "s3://m/run-4/", DIGEST, 4, "img:default")
    assert (model.secrets, model.model_deployment, model.retrain_job) == (
        ("store",), "churn", "weekly")
    waiting = scoring.model_from_retrainjob({**rj, "status": {}}, default_image="img")
    assert isinstance(waiting, scoring.Unresolved) and not waiting.final


# -- the Job ------------------------------------------------------------------------------------
def test_the_job_is_indexed_with_the_contracts_environment() -> None:
    job = scoring.scoring_job(name="nightly", namespace="ml", uid=UID,
                              spec=spec(shards=6, batchRows=5000), model=resolved())  # fmt: skip
    s = job["spec"]
    assert (s["completionMode"], s["completions"], s["parallelism"]) == ("Indexed", 6, 3)
    assert s["backoffLimitPerIndex"] == 3
    rules = s["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {
        "containerName": "scorer", "operator": "In",
        "values": list(contract.SCORE_PERMANENT_EXIT_CODES)}}  # fmt: skip
    assert rules[1]["action"] == "Ignore"
    assert rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    pod = s["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["seaway-score"]
    assert container["securityContext"] == children.RESTRICTED_CONTAINER
    env = [(e["name"], e["value"]) for e in container["env"]]
    model_env = [kv for kv in contract.server_env(
        bundle="s3://models/churn/v2/", model_format="sklearn-joblib", digest=DIGEST,
        allow_unverified=False, model_name="churn", revision=2, port=1)
        if kv[0] not in (contract.HOST, contract.PORT)]  # fmt: skip
    score_env = contract.score_env(
        input_uri="s3://data/customers/", output_uri="s3://scores/churn/", shards=6, run_id=UID,
        key_columns=("id",), batch_rows=5000)  # fmt: skip
    assert env == model_env + score_env
    assert not any(name in (contract.HOST, contract.PORT) for name, _ in env)
    # the model's Secret, then the input's and the output's, each once
    assert container["envFrom"] == [{"secretRef": {"name": n}} for n in ("store", "s", "out")]
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ScoringJob", UID, True)
    assert job["metadata"]["labels"][scoring.SCORING_LABEL] == "nightly"
    assert pod is not None and s["template"]["metadata"]["labels"][scoring.SCORING_LABEL]


def test_probabilities_and_formats_reach_the_scorer() -> None:
    job = scoring.scoring_job(
        name="p", namespace="ml", uid=UID, model=resolved(),
        spec=spec(input={"uri": "file:///data/in.csv", "format": "csv"},
                  output={"uri": "file:///data/out/", "format": "csv", "probabilities": True}),
    )  # fmt: skip
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[contract.SCORE_METHODS] == "predict,predict_proba"
    assert env[contract.SCORE_INPUT_FORMAT] == "csv"
    assert env[contract.SCORE_OUTPUT_FORMAT] == "csv"
    assert contract.SCORE_KEY_COLUMNS not in env
    assert "envFrom" in job["spec"]["template"]["spec"]["containers"][0]  # the model's Secret


def test_the_job_is_the_frozen_record_of_its_model() -> None:
    model = resolved()
    job = scoring.scoring_job(name="n", namespace="ml", uid=UID, spec=spec(), model=model)
    back = scoring.model_of_job(job)
    assert back is not None
    assert back.frozen() == model.frozen()


def test_status_never_shows_credentials_of_the_bundle_uri() -> None:
    model = scoring.Model(uri="https://user:pw@models.example/churn.tar.gz?X-Amz-Signature=x",
                          format="skops", digest=None, allow_unverified=False, image="i",
                          name="churn", revision=1, model_deployment="churn")  # fmt: skip
    assert model.frozen().uri == "https://models.example/churn.tar.gz"


# -- progress -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "count"), [(None, 0), ("", 0), ("0", 1), ("0-2", 3),
                                             ("0-2,5,7-8", 6)])  # fmt: skip
def test_count_indexes(text: str | None, count: int) -> None:
    assert scoring.count_indexes(text) == count


def test_rows_are_summed_over_attempts_and_units_over_messages() -> None:
    attempts = [
        scoring.Attempt(0, 0, report(0, [0, 3], 200), "2026-11-30T09:01:00Z"),
        # index 1 failed once after unit 1, then its retry scored unit 4 (and skipped unit 1)
        scoring.Attempt(1, 1, report(1, [1], 100, "Failed", message="connection reset"),
                        "2026-11-30T09:01:00Z"),
        scoring.Attempt(1, 0, report(1, [1, 4], 100), "2026-11-30T09:02:00Z"),
        scoring.Attempt(2, 0, report(2, [2, 5], 200), "2026-11-30T09:01:30Z"),
    ]  # fmt: skip
    progress = scoring.aggregate(attempts)
    assert (progress.units_total, progress.units_done, progress.rows) == (6, 6, 600)
    assert progress.failure == ("Failed", "connection reset")


def test_rows_skipped_stand_in_for_an_attempt_that_was_never_seen() -> None:
    # index 0's first pod was deleted mid-run (no message); its retry found unit 0 recorded
    attempts = [scoring.Attempt(0, 0, report(0, [0, 3], 120, rowsSkipped=80))]
    assert scoring.aggregate(attempts).rows == 200


def test_a_succeeded_index_without_unit_lists_did_every_unit_of_its_index() -> None:
    # thousands of units: the scorer leaves the lists out to fit the kubelet's 4 KiB
    lean = json.loads(report(1, [], 500, rowsSkipped=0))
    del lean["unitsDone"], lean["unitsSkipped"]
    lean["unitsTotal"] = 3000
    attempts = [scoring.Attempt(1, 0, json.dumps(lean), "2026-11-30T09:01:00Z")]
    progress = scoring.aggregate(attempts, shards=3)
    assert (progress.units_total, progress.units_done, progress.rows) == (3000, 1000, 500)


def test_a_permanent_reason_wins_over_a_retry() -> None:
    attempts = [
        scoring.Attempt(0, 1, report(0, [], 0, "Failed", message="timeout"), "2"),
        scoring.Attempt(1, 3, report(1, [], 0, "ModelRefused", message="digest mismatch"), "1"),
        scoring.Attempt(2, 137, "Killed\n", "3"),
    ]
    assert scoring.aggregate(attempts).failure == ("ModelRefused", "digest mismatch")


def test_attempts_are_read_from_current_and_previous_states() -> None:
    pod = {
        "metadata": {"annotations": {scoring.INDEX_ANNOTATION: "2"}},
        "status": {"containerStatuses": [{
            "name": "scorer",
            "state": {"terminated": {"exitCode": 0, "message": report(2, [2], 5),
                                     "finishedAt": "2026-11-30T09:03:00Z"}},
            "lastState": {"terminated": {"exitCode": 1, "message": "boom"}},
        }]},
    }  # fmt: skip
    found = scoring.attempts_of([pod, {"metadata": {}, "status": {}}])
    assert [(a.index, a.exit_code) for a in found] == [(2, 0), (2, 1)]


# -- the pass -----------------------------------------------------------------------------------
class Sim:
    def __init__(self, sj: ScoringJobSpec) -> None:
        self.spec = sj
        self.status = ScoringJobStatus()
        self.now = T0
        self.events: list[tuple[str, str]] = []
        self.notifications: list[dict[str, Any]] = []

    def step(self, observed: scoring.Observation, after: float = 0) -> scoring.ScoringPlan:
        self.now += timedelta(seconds=after)
        result = scoring.plan(name="nightly", namespace="ml", uid=UID, spec=self.spec,
                              status=self.status, generation=1, observed=observed,
                              now=self.now)  # fmt: skip
        self.status = result.status
        self.events += [(e.reason, e.message) for e in result.events]
        self.notifications += result.notifications
        return result

    def condition(self, type_: str) -> tuple[str, str, str] | None:
        found = conditions.find(self.status.conditions, type_)
        return (found.status, found.reason, found.message) if found else None


def job(completed: str = "", condition: str | None = None, **status: Any) -> dict[str, Any]:
    body = scoring.scoring_job(name="nightly", namespace="ml", uid=UID, spec=spec(),
                               model=resolved())  # fmt: skip
    body["status"] = {"startTime": "2026-11-30T09:00:00Z", "completedIndexes": completed, **status}
    if condition:
        body["status"]["conditions"] = [{"type": condition, "status": "True",
                                         "reason": "PodFailurePolicy"}]  # fmt: skip
    return body


def test_waits_for_a_model_then_creates_the_job_once_and_follows_it_to_success() -> None:
    sim = Sim(spec())
    waiting = scoring.Unresolved("NoStableRevision", "waiting for churn to have a stable revision")
    first = sim.step(scoring.Observation(job=None, model=waiting))
    assert first.create_job is None and scoring.state_of(sim.status) == "Pending"
    assert sim.condition("Complete") == ("False", "NoStableRevision", waiting.message)
    sim.step(scoring.Observation(job=None, model=waiting), after=10)
    assert [r for r, _ in sim.events] == ["NoStableRevision"]  # said once, not every pass

    created = sim.step(scoring.Observation(job=None, model=resolved()), after=10)
    assert created.create_job is not None
    assert scoring.state_of(sim.status) == "Running" and sim.status.shards == "0/3"
    assert sim.status.model is not None and sim.status.model.revision == 2
    assert sim.status.model.digest == DIGEST

    sim.step(scoring.Observation(job=job("0-1"), attempts=[
        scoring.Attempt(0, 0, report(0, [0, 3], 300)),
        scoring.Attempt(1, 0, report(1, [1, 4], 300))]), after=20)  # fmt: skip
    assert (sim.status.shards, sim.status.rows_scored, sim.status.units_done) == ("2/3", 600, 4)
    assert scoring.state_of(sim.status) == "Running"

    attempts = [scoring.Attempt(i, 0, report(i, [i, i + 3], 300)) for i in range(3)]
    done = job("0-2", "Complete", completionTime="2026-11-30T09:01:20Z")  # started 09:00:20
    sim.step(scoring.Observation(job=done, attempts=attempts), after=30)
    assert scoring.state_of(sim.status) == "Succeeded" and sim.status.shards == "3/3"
    assert (sim.status.rows_scored, sim.status.rows_per_second) == (900, 15)  # 900 rows in 60 s
    assert sim.status.completed_at == "2026-11-30T09:01:20Z"
    assert sim.condition("Complete")[:2] == ("True", "Succeeded")  # type: ignore[index]
    assert sim.notifications[-1]["event"] == "ScoringSucceeded"
    # finished: later passes change nothing and announce nothing again
    before = (sim.status.to_wire(), len(sim.events), len(sim.notifications))
    sim.step(scoring.Observation(job=done, attempts=attempts), after=60)
    assert (sim.status.to_wire(), len(sim.events), len(sim.notifications)) == before


def test_a_completed_job_waits_briefly_for_every_indexs_message_before_its_rows_are_final() -> None:
    sim = Sim(spec())
    sim.step(scoring.Observation(job=None, model=resolved()))
    sim.now = datetime(2026, 11, 30, 9, 1, 21, tzinfo=UTC)
    done = job("0-2", "Complete", completionTime="2026-11-30T09:01:20Z")
    two = [scoring.Attempt(i, 0, report(i, [i, i + 3], 300)) for i in range(2)]
    early = sim.step(scoring.Observation(job=done, attempts=two))
    assert scoring.state_of(sim.status) == "Running" and early.requeue_after == 1.0
    assert "waiting for 1 scorer message" in sim.condition("Complete")[2]  # type: ignore[index]
    assert sim.notifications == []
    three = [*two, scoring.Attempt(2, 0, report(2, [2, 5], 300))]
    sim.step(scoring.Observation(job=done, attempts=three), after=1)
    assert scoring.state_of(sim.status) == "Succeeded" and sim.status.rows_scored == 900
    # a message that never comes (its pod deleted since) is given up after the grace
    late = Sim(spec())
    late.step(scoring.Observation(job=None, model=resolved()))
    late.now = datetime(2026, 11, 30, 9, 1, 20, tzinfo=UTC) + timedelta(
        seconds=scoring.MESSAGE_GRACE_SECONDS + 1)
    late.step(scoring.Observation(job=done, attempts=two))
    assert scoring.state_of(late.status) == "Succeeded" and late.status.rows_scored == 600
    assert "rows of 1 shard(s) whose pods were deleted" in late.condition("Complete")[2]  # type: ignore[index]
    assert "deleted" not in sim.condition("Complete")[2]  # type: ignore[index]


def test_a_refused_model_fails_the_job_with_the_scorers_reason_and_message() -> None:
    sim = Sim(spec())
    sim.step(scoring.Observation(job=None, model=resolved()))
    message = "the model file's sha256 does not match the pinned digest"
    failed = job("", "Failed")
    sim.step(scoring.Observation(job=failed, attempts=[
        scoring.Attempt(0, 3, report(0, [], 0, "ModelRefused", message=message))]), after=5)
    assert scoring.state_of(sim.status) == "Failed"
    assert sim.condition("Failed") == ("True", "ModelRefused", message)
    assert sim.status.message == message
    assert ("ModelRefused", message) in sim.events
    assert sim.notifications[-1] == {"event": "ScoringFailed", "reason": "ModelRefused",
                                     "message": message}  # fmt: skip


def test_a_failed_job_without_a_scorer_message_shows_the_jobs_reason() -> None:
    sim = Sim(spec())
    sim.step(scoring.Observation(job=None, model=resolved()))
    failed = job("", None, conditions=[{"type": "Failed", "status": "True",
                                        "reason": "DeadlineExceeded",
                                        "message": "Job was active longer than specified"}])
    sim.step(scoring.Observation(job=failed), after=5)
    assert sim.condition("Failed") == ("True", "DeadlineExceeded",
                                       "Job was active longer than specified")  # fmt: skip


def test_a_missing_revision_fails_at_once_without_a_job() -> None:
    sim = Sim(spec(model={"modelDeployment": "churn", "revision": 9}))
    gone = scoring.Unresolved("RevisionNotFound", "churn has no revision 9", final=True)
    result = sim.step(scoring.Observation(job=None, model=gone))
    assert result.create_job is None and scoring.state_of(sim.status) == "Failed"
    assert sim.condition("Failed") == ("True", "RevisionNotFound", "churn has no revision 9")
