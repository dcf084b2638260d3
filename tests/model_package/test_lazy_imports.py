"""Importing the library (as the CLI and the serving container do) must not import a framework or SDK."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "tensorflow", "keras", "onnxruntime", "boto3", "google.cloud.storage")


def test_importing_model_package_imports_no_framework_or_cloud_sdk() -> None:
    code = (
        "import sys\n"
        "import model_package, model_package.cli, model_package.formats, model_package.verify\n"
        "import model_package.archive, model_package.publish, model_package.export, model_package.stores\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "", f"imported eagerly: {result.stdout.strip()}"
