"""The watch-fed store keeps the newest version of each object and finds children by owner."""

from __future__ import annotations

from typing import Any

from seaway.k8s.cache import Store, _equality_selector

LABEL = "seaway.dev/model-deployment"


def obj(name: str, version: str, owner: str | None = "churn", ns: str = "ml") -> dict[str, Any]:
    labels = {LABEL: owner} if owner else {}
    return {
        "metadata": {"name": name, "namespace": ns, "resourceVersion": version, "labels": labels}
    }


def test_an_older_event_never_replaces_a_newer_object() -> None:
    store = Store(LABEL)
    store.put("Deployment", obj("churn-r1", "20"))
    store.put("Deployment", obj("churn-r1", "15"))
    found = store.get("Deployment", "ml", "churn-r1")
    assert found is not None and found["metadata"]["resourceVersion"] == "20"


def test_select_by_owner_label_and_namespace() -> None:
    store = Store(LABEL)
    store.put("Deployment", obj("churn-r1", "1"))
    store.put("Deployment", obj("churn-r2", "2"))
    store.put("Deployment", obj("other-r1", "3", owner="other"))
    store.put("Deployment", obj("churn-r1", "4", ns="elsewhere"))
    store.put("Deployment", obj("plain", "5", owner=None))
    names = [d["metadata"]["name"] for d in store.select("Deployment", "ml", {LABEL: "churn"})]
    assert names == ["churn-r1", "churn-r2"]
    store.put("Deployment", obj("churn-r2", "6", owner="other"))  # relabelled: moves index
    assert [d["metadata"]["name"] for d in store.select("Deployment", "ml", {LABEL: "churn"})] == [
        "churn-r1"
    ]
    store.delete("Deployment", "ml", "churn-r1")
    assert store.select("Deployment", "ml", {LABEL: "churn"}) == []
    assert len(store.select("Deployment", "ml", {})) == 3


def test_reads_are_copies() -> None:
    store = Store(LABEL)
    store.put("ModelDeployment", obj("churn", "1"))
    body = store.get("ModelDeployment", "ml", "churn")
    assert body is not None
    body["status"] = {"changed": True}
    again = store.get("ModelDeployment", "ml", "churn")
    assert again is not None and "status" not in again


def test_only_equality_selectors_are_served_from_the_store() -> None:
    assert _equality_selector("a=b,c=d") == {"a": "b", "c": "d"}
    assert _equality_selector(None) == {}
    assert _equality_selector("a!=b") is None
    assert _equality_selector("a") is None
    assert _equality_selector("a==b") is None


def test_cached_objects_share_their_strings_and_drop_managed_fields() -> None:
    """Every watch event is a new JSON document: the store shares equal keys and short values
    between objects (and keeps long ones as they are), so thousands of children stay small."""
    import json

    def event(name: str) -> dict[str, Any]:  # parsed from its own document, as a watch does
        body = obj(name, "7")
        body["metadata"]["managedFields"] = [{"manager": "seaway", "operation": "Apply"}]
        body["spec"] = {"template": {"spec": {"containers": [
            {"image": "seaway/server:1", "imagePullPolicy": "IfNotPresent",
             "args": ["x" * 100]}]}}}
        return dict(json.loads(json.dumps(body)))

    store = Store(LABEL)
    store.put("Deployment", event("churn-r1"))
    store.put("Deployment", event("churn-r2"))
    one, two = (store.get("Deployment", "ml", n) for n in ("churn-r1", "churn-r2"))
    assert one is not None and two is not None
    assert "managedFields" not in one["metadata"]
    first, second = (d["spec"]["template"]["spec"]["containers"][0] for d in (one, two))
    assert first == second
    assert first["imagePullPolicy"] is second["imagePullPolicy"]
    assert first["image"] is second["image"]
    assert next(iter(first)) is next(iter(second))  # the keys too
    assert first["args"][0] is not second["args"][0]  # long values are not interned
