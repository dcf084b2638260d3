"""Returns its helper module's label, to show which helper it imported."""

from labels import LABEL


def transform_fn(model, request_body, content_type, accept):
    return LABEL, "text/plain"
