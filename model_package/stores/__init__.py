"""Package stores: one small object-store interface over local disk, S3 and GCS.

Importing this package imports neither boto3 nor google-cloud-storage; they
load when an ``s3://`` or ``gs://`` store is opened.
"""

from model_package.stores.base import (
    SUPPORTED_URIS,
    ObjectInfo,
    Store,
    StoreLocation,
    TransferSettings,
    open_store,
    parse_store_uri,
)
from model_package.stores.local import LocalStore

__all__ = [
    "SUPPORTED_URIS",
    "LocalStore",
    "ObjectInfo",
    "Store",
    "StoreLocation",
    "TransferSettings",
    "open_store",
    "parse_store_uri",
]
