"""The bootstrap program run under Pulumi's mocks, shared by its own tests and the access evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from infra.bootstrap import deploy, from_pulumi
from tests.infra.mocks import ACCOUNT_ID, Deployment, RecordingMocks, RecordingMonitor, run_program

OIDC_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/token.actions.githubusercontent.com"
POOL = "projects/123456/locations/global/workloadIdentityPools/github-model-deploy"


class BootstrapMocks(RecordingMocks):
    """:class:`RecordingMocks` plus what the bootstrap program reads: partition, region, OIDC and pool names."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            state["arn"] = OIDC_ARN.replace(ACCOUNT_ID, self.account_id)
        elif args.typ == "gcp:iam/workloadIdentityPool:WorkloadIdentityPool":
            state["name"] = POOL
        elif args.typ == "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider":
            state["name"] = f"{POOL}/providers/{state['workloadIdentityPoolProviderId']}"
        elif args.typ == "gcp:kms/keyRing:KeyRing":  # ids as the Google provider makes them
            resource_id = f"projects/{state['project']}/locations/{state['location']}/keyRings/{state['name']}"
        elif args.typ == "gcp:kms/cryptoKey:CryptoKey":
            resource_id = f"{state['keyRing']}/cryptoKeys/{state['name']}"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:index/getPartition:getPartition":
            self.calls.append(args.token)
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "id": "aws",
                "reverseDnsPrefix": "com.amazonaws",
            }, []
        if args.token == "aws:index/getRegion:getRegion":
            self.calls.append(args.token)
            return {
                "region": self.region,
                "name": self.region,
                "id": self.region,
                "endpoint": "",
                "description": "",
            }, []
        if args.token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
            # The account's existing provider, as IAM names it: oidc-provider/<host of its URL>.
            self.calls.append(args.token)
            host = str(args.args["url"]).removeprefix("https://")
            arn = f"arn:aws:iam::{self.account_id}:oidc-provider/{host}"
            return {"arn": arn, "url": host, "id": arn, "clientIdLists": ["sts.amazonaws.com"], "tags": {}}, []
        return super().call(args)


def bootstrap(values: Mapping[str, Any], *, account_id: str = ACCOUNT_ID, region: str = "eu-west-1") -> Deployment:
    """Run the bootstrap program with ``values`` (keys without the namespace) as account ``account_id``."""

    def program() -> None:
        for name, value in deploy(from_pulumi()).items():
            pulumi.export(name, value)

    config = {f"model-deploy-bootstrap:{key}": value for key, value in values.items()}
    return run_program(
        config,
        stack="bootstrap",
        program=program,
        monitor=RecordingMonitor(BootstrapMocks(account_id=account_id, region=region)),
    )
