"""The build steps as plain functions over core + storage (no Dagster).

The Dagster assets and the CLI call the same functions; ``build_dataset`` runs them in order.
"""

from dataset_assets.pipeline.build import build_dataset

__all__ = ["build_dataset"]
