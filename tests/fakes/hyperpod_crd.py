"""The HyperPodPyTorchJob custom resource as the HyperPod training operator accepts it.

The CRD (hyperpodpytorchjobs.sagemaker.amazonaws.com, installed by the EKS add-on
amazon-sagemaker-hyperpod-training-operator) is not published on its own; this schema is
transcribed from the pydantic models the HyperPod CLI generates from it
(github.com/aws/sagemaker-hyperpod-cli @ 011ca927123e02b35a399935bbb3ab1905fe33c7,
src/sagemaker/hyperpod/training/config/hyperpod_pytorch_job_unified_config.py:
ReplicaSpec and RunPolicy forbid extra fields, ReplicaSpec.name is required, nprocPerNode
is a string "auto|cpu|gpu|<int>"), the operator's docs (cleanPodPolicy All, OnlyComplete
or None) and Kubernetes' naming rules (apimachinery validation: DNS-1123 subdomains for
object names, qualified names for label and annotation keys, label values <= 63).
"""

from __future__ import annotations

QUALIFIED_NAME = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"

_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": QUALIFIED_NAME},
            "additionalProperties": {"type": "string", "pattern": LABEL_VALUE},
        },
        "annotations": {
            "type": "object",
            "propertyNames": {"pattern": QUALIFIED_NAME},
            "additionalProperties": {"type": "string"},
        },
    },
}

SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "sagemaker.amazonaws.com/v1"},
        "kind": {"const": "HyperPodPyTorchJob"},
        "metadata": {**_METADATA, "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "nprocPerNode": {"type": "string", "pattern": r"^(auto|cpu|gpu|[0-9]+)$"},
                "replicaSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer"},
                            "spares": {"type": "integer", "minimum": 0},
                            "template": {
                                "type": "object",
                                "properties": {
                                    "metadata": _METADATA,
                                    "spec": {"type": "object", "required": ["containers"]},
                                },
                            },
                        },
                    },
                },
                "runPolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                        "cleanPodPolicy": {"enum": ["All", "OnlyComplete", "None"]},
                        "faultDeadlineSeconds": {"type": "integer"},
                        "jobMaxRetryCount": {"type": "integer", "minimum": 0},
                        "logMonitoringConfiguration": {"type": "array"},
                        "restartPolicy": {"type": "object"},
                        "startupDeadlineSeconds": {"type": "integer"},
                        "suspend": {"type": "boolean"},
                        "ttlSecondsAfterFinished": {"type": "integer"},
                        "workloadMode": {"type": "string"},
                    },
                },
                "elasticPolicy": {"type": "object"},
            },
        },
    },
}
