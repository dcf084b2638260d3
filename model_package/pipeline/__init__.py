"""Declarative pre- and post-processing in a package: the schema (here) and its interpreter (``runner``).

Only the schema is exported: the manifest imports it, and the runner (which needs Pillow or
``tokenizers``) is imported where it runs.
"""

from model_package.pipeline.schema import (
    EmbeddingOutput,
    IdsInput,
    ImageInput,
    LabelsOutput,
    Pipeline,
    RawExample,
    TextInput,
    TopKOutput,
)

__all__ = [
    "EmbeddingOutput",
    "IdsInput",
    "ImageInput",
    "LabelsOutput",
    "Pipeline",
    "RawExample",
    "TextInput",
    "TopKOutput",
]
