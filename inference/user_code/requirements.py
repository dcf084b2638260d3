"""Installing a package's ``code/requirements.txt`` with pip at start-up."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from model_package.errors import LoadError
from model_package.formats.base import one_line_error
from model_package.manifest import Manifest

logger = logging.getLogger("inference.user_code")

_PIP_TIMEOUT_S = 900.0


# ---------------------------------------------------------------------------------------------------------------------
# code/requirements.txt


def install_requirements(package_dir: Path, manifest: Manifest, *, timeout: float = _PIP_TIMEOUT_S) -> None:
    """``pip install`` the package's ``code/requirements.txt`` into the serving environment.

    Only for operators who opt in: network-isolated endpoints cannot reach an
    index, so the recommended way is to bake dependencies into the image. Runs
    pip in ``code/`` so relative paths (vendored wheels) resolve there, and
    skips pip's self-version check, which would itself need the network.
    Raises :class:`LoadError` with pip's error line when the install fails.
    """
    if manifest.code is None or manifest.code.requirements is None:
        return
    path = package_dir / manifest.code.requirements
    if not path.is_file():
        raise LoadError(f"{path} does not exist, but the manifest lists it as the user code's requirements")
    command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "-r", str(path)]
    logger.info("installing user code requirements from %s", manifest.code.requirements)
    try:
        completed = subprocess.run(  # a fixed command; the requirements file is the package's own
            command, cwd=path.parent, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(
            f"pip install -r {path} did not finish within {timeout:.0f} s; bake the dependencies into the "
            "serving image instead"
        ) from exc
    except OSError as exc:
        raise LoadError(f"cannot run pip to install {path}: {one_line_error(exc)}") from exc
    if completed.returncode != 0:
        raise LoadError(
            f"pip install -r {path} failed (exit code {completed.returncode}): "
            f"{_pip_error(completed.stderr or completed.stdout)}. Fix {manifest.code.requirements} or bake the "
            "dependencies into the serving image (network-isolated endpoints cannot reach a package index)"
        )
    summary = [line for line in completed.stdout.splitlines() if line.strip()]
    logger.info("pip: %s", summary[-1] if summary else "nothing to install")


def _pip_error(output: str) -> str:
    """pip's ``ERROR:`` and ``Hint:`` lines as one line (its full output goes to the debug log)."""
    logger.debug("pip output:\n%s", output)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    relevant = [line for line in lines if line.startswith(("ERROR:", "Hint:"))] or lines[-1:]
    return " ".join(relevant)[:600] or "no output"
