"""Serving a package's declared pipeline: HTTP bodies to raw items, and raw items to answers."""

from inference.pipeline.requests import parse_items, raw_media_types
from inference.pipeline.serving import PipelineService, answers_body

__all__ = ["PipelineService", "answers_body", "parse_items", "raw_media_types"]
