"""Fixtures for the inference tests: real packages and real server processes (see server_fixtures)."""

from tests.inference.server_fixtures import sagemaker_server, slow_user_code_package, text_server, torch_package

__all__ = ["sagemaker_server", "slow_user_code_package", "text_server", "torch_package"]
