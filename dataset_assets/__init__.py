"""dataset_assets: chat conversations to a verified, training-ready dataset in S3."""

__version__ = "0.1.0"
