"""The storage layer: the only place boto3 appears (docs/architecture.md, "Layers").

S3Settings      how to reach the store (explicit, or from an environment mapping)
S3ObjectStore   one bucket; every botocore error translated to core.errors here
Publisher       the publish protocol: upload → verify → delete local, bounded, journaled
Journal         JSONL audit log of every publish step
SeaweedServer   the embedded local S3 server (weed mini)
"""

from dataset_assets.storage.journal import Journal
from dataset_assets.storage.local_server import SeaweedServer
from dataset_assets.storage.objects import ObjectInfo, S3ObjectStore
from dataset_assets.storage.publish import PublishedObject, Publisher, PublishError
from dataset_assets.storage.settings import S3Settings

__all__ = [
    "Journal",
    "ObjectInfo",
    "PublishError",
    "PublishedObject",
    "Publisher",
    "S3ObjectStore",
    "S3Settings",
    "SeaweedServer",
]
