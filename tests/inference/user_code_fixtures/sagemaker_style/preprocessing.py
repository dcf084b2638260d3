"""Request parsing shared by the hooks (a helper module imported from code/)."""

import io
import json

import numpy as np


def parse_json(text):
    """``{"instances": [[...], ...]}`` or a bare list of rows -> float32 rows."""
    payload = json.loads(text)
    rows = payload["instances"] if isinstance(payload, dict) else payload
    return np.asarray(rows, dtype=np.float32)


def parse_csv(text):
    """One row of comma-separated features per line -> float32 rows."""
    return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2)
