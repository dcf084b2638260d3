"""Pulumi programs that deploy a pinned model package to AWS SageMaker or GCP."""
