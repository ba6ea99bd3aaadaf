"""The Seaway API (group ``seaway.dev``, version ``v1alpha1``) as pydantic models.

These models are the single source of truth: the CRD YAML in ``crds/`` is generated from them by
:mod:`seaway.crdgen`, the operator parses every object it reads into them once, at the boundary,
and ``docs/api.md`` documents them. This package is pure: no Kubernetes client, no I/O.
"""

from seaway.api.common import API_VERSION, GROUP, VERSION, Condition, ObjectMeta
from seaway.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from seaway.api.retrainjob import RetrainJob, RetrainJobSpec, RetrainJobStatus
from seaway.api.scoringjob import ScoringJob, ScoringJobSpec, ScoringJobStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ObjectMeta",
    "RetrainJob",
    "RetrainJobSpec",
    "RetrainJobStatus",
    "ScoringJob",
    "ScoringJobSpec",
    "ScoringJobStatus",
]
