"""The scheduled model report on the real API server, with the operator running in-process.

A real HTTP receiver on 127.0.0.1 (allowed by the operator's webhook allowlist) records what
the operator posts. The operator's clock is moved with ``SEAWAY_CLOCK_OFFSET_SECONDS`` (the
test-only clock of docs/operator.md), so an hourly schedule comes due within seconds; nothing
here sleeps for a due time. Pods run on kwok's simulated node; there is no Prometheus.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.integration.mdtools import GROUP, PLURAL, VERSION, User, md_body

OPERATOR = ["seaway.handlers.operator"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "report.md"


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        document = json.loads(self.rfile.read(length))
        with Receiver.lock:
            Receiver.received.append(document)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("SEAWAY_ALLOWED_WEBHOOK_HOSTS", "127.0.0.1")
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/seaway"
    finally:
        server.shutdown()
        server.server_close()


def summaries(name: str) -> list[dict[str, Any]]:
    with Receiver.lock:
        found = [d for d in Receiver.received if d.get("kind") == "SeawayModelReport"]
    return [d for d in found if d["name"] == name]


def documented_fields() -> set[str]:
    """The top-level fields of the JSON summary as docs/report.md shows them."""
    text = DOCS.read_text()
    block = re.search(r'```json\n(\{\n  "kind": "SeawayModelReport".*?)\n```', text, re.S)
    assert block, "docs/report.md shows the JSON summary"
    return set(json.loads(block.group(1)))


def parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_summary_sent_once_per_due_time_across_resyncs_and_a_restart(
    run_operator: Any,
    kube_api: Any,
    namespace: str,
    seaway_crds: list[str],
    webhook: str,
    eventually: Any,
    consistently: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from seaway.handlers.operator import CLOCK_OFFSET_ENV

    user = User(kube_api, namespace)
    monkeypatch.setenv(CLOCK_OFFSET_ENV, "0")
    offset = 0.0

    def jump_past(moment: str, seconds: float = 5.0) -> None:
        """Move the operator's clock to ``seconds`` after ``moment``."""
        nonlocal offset
        offset = (parse(moment) - datetime.now(UTC)).total_seconds() + seconds
        monkeypatch.setenv(CLOCK_OFFSET_ENV, str(offset))

    def nudge(name: str, value: str) -> str:
        """A metadata change, as a resync or another controller makes; returns its version."""
        patched = user.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name,
            {"metadata": {"annotations": {"test/nudge": value}}},
        )  # fmt: skip
        return str(patched["metadata"]["resourceVersion"])

    summary = {"schedule": "@hourly"}
    with run_operator(OPERATOR, namespace=namespace):
        user.create(md_body("churn", 1, notifications={"webhookURL": webhook, "summary": summary}))
        # a host the allowlist does not name: the failure is recorded, never retried in the hour
        blocked = "http://127.0.0.2:9/hooks"
        user.create(md_body("fraud", 1, notifications={"webhookURL": blocked, "summary": summary}))
        for name in ("churn", "fraud"):
            eventually(lambda n=name: user.status(n).get("stableRevision") == 1, what="r1")
            eventually(lambda n=name: "nextAt" in user.status(n).get("summary", {}), what="nextAt")
        first_due = user.status("churn")["summary"]["nextAt"]
        assert parse(first_due).minute == 0 and summaries("churn") == []

        jump_past(first_due)
        nudge("churn", "1")
        nudge("fraud", "1")
        eventually(lambda: len(summaries("churn")) == 1, what="the first summary")
        eventually(lambda: user.status("churn")["summary"].get("lastResult") == "Sent")
        status = user.status("churn")
        sent = status["summary"]
        assert sent["lastDueAt"] == first_due and sent["schedule"] == "@hourly"
        assert parse(sent["nextAt"]) > parse(first_due)
        assert "SummarySent" in user.event_reasons("churn")

        document = summaries("churn")[0]
        assert set(document) == documented_fields()
        assert (document["kind"], document["version"]) == ("SeawayModelReport", 1)
        assert (document["namespace"], document["name"]) == (namespace, "churn")
        assert document["window"] == "1h"
        assert document["text"].startswith(f"Model report {namespace}/churn (last 1h): ")
        assert document["generatedAt"] == sent["lastSentAt"]
        assert document["stableRevision"] == status["stableRevision"] == 1
        assert document["canaryRevision"] is None and "canaryRevision" not in status
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert document["ready"] == ready["status"] == "True"
        weights = {w["revision"]: w["weight"] for w in status["weights"]}
        assert [
            (r["number"], r["fate"], r["createdAt"], r["createdBy"], r["weight"])
            for r in document["revisions"]
        ] == [
            (r["number"], r["fate"], r["createdAt"], r["createdBy"], weights.get(r["number"]))
            for r in status["revisions"]
        ]
        assert document["traffic"] is None and document["drift"] is None
        assert document["retraining"] == [] and document["experiment"] is None
        assert any("No Prometheus known" in line for line in document["missing"])

        eventually(lambda: user.status("fraud")["summary"].get("lastResult") == "Failed")
        failed = user.status("fraud")["summary"]
        assert "not allowed" in failed["message"] and "lastSentAt" not in failed
        assert "SummaryFailed" in user.event_reasons("fraud")

        # resyncs within the hour: nothing due, nothing sent, nothing written
        for name in ("churn", "fraud"):
            version = nudge(name, "2")
            consistently(
                lambda n=name, v=version: user.get(n)["metadata"]["resourceVersion"] == v,
                duration=3,
            )
        assert len(summaries("churn")) == 1
        assert user.status("fraud")["summary"] == failed
        next_due = user.status("churn")["summary"]["nextAt"]

    # The operator is down over three due times; a new one has only status to go by.
    jump_past(next_due, seconds=2 * 3600 + 5)
    with run_operator(OPERATOR, namespace=namespace):
        eventually(lambda: len(summaries("churn")) == 2, what="one summary after the restart")
        eventually(lambda: user.status("churn")["summary"].get("lastResult") == "Sent")
        consistently(lambda: len(summaries("churn")) == 2, duration=3)
        after = user.status("churn")["summary"]
        assert after["lastDueAt"] == next_due
        assert (parse(after["nextAt"]) - parse(next_due)).total_seconds() == 3 * 3600
        message = next(e.message for e in user.events("churn") if e.reason == "SummarySent"
                       and "missed" in e.message)  # fmt: skip
        assert "covers 2 later due time(s)" in message
        assert summaries("churn")[1]["generatedAt"] == after["lastSentAt"]
        # the failed host is not retried: its next due time sends (and fails) once more
        eventually(lambda: user.status("fraud")["summary"]["lastDueAt"] == next_due)
