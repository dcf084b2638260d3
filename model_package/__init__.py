"""Export, package, verify and publish PyTorch and TensorFlow models.

Importing this package does not import PyTorch or TensorFlow.
"""

from model_package._version import __version__

__all__ = ["__version__"]
