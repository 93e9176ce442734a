"""Jobs: one build runs every compile asset once, so the manifest and export rebuild once per
change, never once per split."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS

build_job = dg.define_asset_job(
    "build_dataset",
    selection=dg.AssetSelection.assets(*COMPILE_ASSETS),
    description="Compile every source into shards, export and manifest in S3.",
)
