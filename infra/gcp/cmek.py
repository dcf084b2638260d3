"""Customer-managed encryption keys: letting a Google service agent use the stack's Cloud KMS key.

Cloud Storage and Vertex AI encrypt with a CMEK as their project's *service agent*, so the agent
needs ``roles/cloudkms.cryptoKeyEncrypterDecrypter`` on the key before the first bucket, endpoint
or model is created with it; otherwise the create call is refused. The grant is a key-level IAM
member on that one key (additive: bindings others manage on the key stay), never on the key
ring or the project. The key may live in another project: the identity running ``pulumi up``
then needs ``cloudkms.cryptoKeys.setIamPolicy`` on it.
"""

from __future__ import annotations

from typing import Final

import pulumi
from pulumi_gcp import kms, projects, storage

#: What a service agent needs to encrypt and decrypt with a CMEK (and nothing else on the key).
KEY_USER_ROLE: Final = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
VERTEX_SERVICE: Final = "aiplatform.googleapis.com"


def grant_key_use(
    name: str, *, key_name: str, member: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> kms.CryptoKeyIAMMember:
    """Let ``member`` (a service agent) encrypt and decrypt with the Cloud KMS key ``key_name``, and only that key."""
    return kms.CryptoKeyIAMMember(name, crypto_key_id=key_name, role=KEY_USER_ROLE, member=member, opts=opts)


def storage_service_agent(project: str, *, parent: pulumi.Resource) -> pulumi.Output[str]:
    """``serviceAccount:<email>`` of ``project``'s Cloud Storage service agent.

    The lookup creates the agent if the project has none yet; interpolating the documented
    ``service-<number>@gs-project-accounts…`` pattern would name an account that may not exist.
    """
    agent = storage.get_project_service_account_output(project=project, opts=pulumi.InvokeOutputOptions(parent=parent))
    return agent.member


def vertex_service_agent(name: str, project: str, *, parent: pulumi.Resource) -> pulumi.Output[str]:
    """``serviceAccount:<email>`` of ``project``'s Vertex AI service agent, created if it does not exist yet.

    Google creates ``service-<number>@gcp-sa-aiplatform.iam.gserviceaccount.com`` only once Vertex AI
    is used, and IAM refuses a grant to an account that does not exist: in a fresh project the
    CMEK endpoint of this stack is that first use. ``ServiceIdentity`` (Service Usage's
    generateServiceIdentity) creates the agent and returns it; deleting it is a no-op.
    """
    identity = projects.ServiceIdentity(
        name, project=project, service=VERTEX_SERVICE, opts=pulumi.ResourceOptions(parent=parent)
    )
    return identity.member
