"""Waiting for a fresh RoleBinding: the API server's authorizer reads RBAC from its cache, which
follows a new binding a moment later (a test that writes at once may be refused 403)."""

from __future__ import annotations

from typing import Any

from tests.support import polling


def wait_allowed(api_client: Any, user: str, verb: str, group: str, resource: str,
                 namespace: str, timeout: float = 10.0) -> None:
    """Until a SubjectAccessReview says ``user`` may ``verb`` ``resource`` in ``namespace``."""
    from kubernetes import client

    authz = client.AuthorizationV1Api(api_client)
    review = {"spec": {"user": user, "resourceAttributes": {
        "namespace": namespace, "verb": verb, "group": group, "resource": resource}}}

    def allowed() -> None:
        answer = authz.create_subject_access_review(review)
        assert answer.status.allowed, f"{user} may not {verb} {resource} yet: {answer.status}"

    polling.eventually(allowed, timeout=timeout, what=f"RBAC for {user} in {namespace}")
