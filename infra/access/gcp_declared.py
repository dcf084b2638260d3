"""The allow policies a Pulumi program declares, read from its resources into :class:`.gcp_policy.Policies`.

Members (``gcp:*IAMMember`` / ``IamMember``) are additive bindings on their resource; custom roles
(``gcp:projects/iAMCustomRole``) are ``projects/<p>/roles/<id>``; buckets say which project they
belong to. Anything else that carries IAM (``IAMPolicy``, ``IAMBinding``, deny policies) raises
:class:`~infra.access.gcp_policy.UnsupportedPolicy`: the programs use none, and guessing would prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from infra.access.gcp_calls import Declared, bucket_resource, service_account_resource
from infra.access.gcp_policy import Policies, UnsupportedPolicy

_UNSUPPORTED: Final = ("IAMPolicy", "IAMBinding", "iAMPolicy", "iAMBinding", "IamPolicy", "IamBinding", "denyPolicy")


def _condition(resource: Declared) -> str | None:
    condition = resource.value("condition")
    return str(condition["expression"]) if condition else None


def add_declared(policies: Policies, resources: Iterable[Declared]) -> Policies:
    """Add the bindings, custom roles and bucket placements ``resources`` declare; returns ``policies``."""
    for resource in resources:
        kind, value = resource.type, resource.value
        if any(marker in kind for marker in _UNSUPPORTED):
            raise UnsupportedPolicy(f"{kind} ({resource.name}) is not modelled")
        if kind == "gcp:projects/iAMCustomRole:IAMCustomRole":
            policies.define_role(f"projects/{value('project')}/roles/{value('roleId')}", value("permissions"))
        elif kind == "gcp:storage/bucket:Bucket":
            policies.bucket_projects[bucket_resource(str(value("name")))] = f"projects/{value('project')}"
        elif kind == "gcp:projects/iAMMember:IAMMember":
            policies.grant(f"projects/{value('project')}", value("role"), value("member"), _condition(resource))
        elif kind == "gcp:storage/bucketIAMMember:BucketIAMMember":
            policies.grant(bucket_resource(str(value("bucket"))), value("role"), value("member"), _condition(resource))
        elif kind == "gcp:serviceaccount/iAMMember:IAMMember":
            email = str(value("serviceAccountId")).rsplit("/", 1)[-1]
            policies.grant(service_account_resource(email), value("role"), value("member"), _condition(resource))
        elif kind == "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember":
            policies.grant(str(value("cryptoKeyId")), value("role"), value("member"), _condition(resource))
        elif kind == "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember":
            repository = f"projects/{value('project')}/locations/{value('location')}/repositories/{value('repository')}"
            policies.grant(repository, value("role"), value("member"), _condition(resource))
        elif kind == "gcp:cloudrunv2/serviceIamMember:ServiceIamMember":
            service = f"projects/{value('project')}/locations/{value('location')}/services/{value('name')}"
            policies.grant(service, value("role"), value("member"), _condition(resource))
    return policies


__all__ = ["add_declared"]
