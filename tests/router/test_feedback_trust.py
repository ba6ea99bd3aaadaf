"""Bandit feedback cannot be forged (issue 15, item 2), through the real router.

The review's attack: clients picked their own ``X-Request-Id``; 300 forged rewards gave a
revision 95% of the traffic and a confidence of 1.0, and a flood of made-up ids pushed real ones
out of the router's memory. Now the router issues signed ids for experiment variants, rewards
count only for those, once each, and /feedback and /experiment can sit behind a bearer token or
on a port of their own.
"""

from __future__ import annotations

import secrets

from tests.router.conftest import Client, blast, raw_request, routes_doc

EXPERIMENT = {"type": "Bandit", "variants": [{"revision": 1}, {"revision": 2}],
              "bandit": {"algorithm": "ThompsonSampling", "explorationFloorPercent": 5}}


def bandit(backends, router, *args, **env):
    bk = backends("a", "b")
    return router(routes_doc(("r1", 1, bk.url("a"), 50), ("r2", 2, bk.url("b"), 50),
                             experiment=EXPERIMENT), *args, **env)


def test_forged_request_ids_earn_no_reward(backends, router):
    rt = bandit(backends, router)
    client = rt.client()
    # the attacker names its requests, then rewards the names that revision 2 answered
    requests = [raw_request(body=b"{}", headers={"X-Request-Id": f"forged-{i}"})
                for i in range(300)]
    replies = blast(rt.port, requests)
    assert all(not r.headers["x-request-id"].startswith("forged-") for r in replies)
    forged = [{"requestId": f"forged-{i}", "reward": 1 if r.revision == 2 else 0}
              for i, r in enumerate(replies)]
    answer = client.post("/feedback", forged).json()
    assert answer["accepted"] == 0 and len(answer["unknown"]) == 300
    # nor can an issued id be re-pointed at another variant, or made up in the same format
    issued = replies[0].headers["x-request-id"]
    revision, stamp, nonce, signature = issued.split(".")
    other = "2" if revision == "1" else "1"
    for fake in (f"{other}.{stamp}.{nonce}.{signature}",
                 f"{revision}.{stamp}.{secrets.token_hex(8)}.{signature}",
                 f"{revision}.{stamp}.{nonce}.{'0' * 32}"):
        refused = client.post("/feedback", {"requestId": fake, "reward": 1})
        assert refused.status == 404 and "not issued by this router" in refused.json()["error"]
    state = client.get("/experiment").json()
    assert sum(v["feedback"] for v in state["variants"]) == 0
    # the real id still works, once
    assert client.post("/feedback", {"requestId": issued, "reward": 1}).json()["accepted"] == 1
    again = client.post("/feedback", {"requestId": issued, "reward": 1})
    assert again.status == 404 and "already rewarded" in again.json()["error"]


def test_a_flood_of_requests_cannot_flush_issued_ids(backends, router):
    rt = bandit(backends, router, feedback_capacity="100")
    client = rt.client()
    real = client.get("/v2/models/m/infer").headers["x-request-id"]
    flood = blast(rt.port, [raw_request(body=b"{}")] * 2000)
    assert {r.status for r in flood} == {200}
    assert client.post("/feedback", {"requestId": real, "reward": 1}).json() == {
        "accepted": 1, "unknown": []}


def test_feedback_and_experiment_behind_a_token(backends, router, tmp_path):
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token + "\n")
    rt = bandit(backends, router, feedback_token_file=str(tmp_path / "token"))
    client = rt.client()
    rid = client.get("/v2/models/m/infer").headers["x-request-id"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        refused = client.post("/feedback", {"requestId": rid, "reward": 1}, headers=headers)
        assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/experiment", headers=headers).status == 401
    good = {"Authorization": f"Bearer {token}"}
    assert client.post("/feedback", {"requestId": rid, "reward": 1}, headers=good).json() == {
        "accepted": 1, "unknown": []}
    assert client.get("/experiment", headers=good).status == 200


def test_feedback_and_experiment_on_a_port_of_their_own(backends, router):
    rt = bandit(backends, router, control_port="0")
    port = next(int(r["control_port"]) for r in rt.log_lines() if "control_port" in r)
    client, control = rt.client(), Client(port)
    try:
        rid = client.get("/v2/models/m/infer").headers["x-request-id"]
        assert client.post("/feedback", {"requestId": rid, "reward": 1}).status == 404
        assert client.get("/experiment").status == 404
        assert control.get("/v2/models/m/infer").status == 404, "no traffic on the control port"
        assert control.post("/feedback", {"requestId": rid, "reward": 1}).json()["accepted"] == 1
        assert control.get("/experiment").status == 200
    finally:
        control.close()
