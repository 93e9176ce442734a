"""Jobs: one build runs every compile asset once, so the manifest and export rebuild once per
change, never once per split."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS

BUILD_TAG = "dataset_assets/build"

build_job = dg.define_asset_job(
    "build_dataset",
    selection=dg.AssetSelection.assets(*COMPILE_ASSETS),
    description="Compile every source into shards, export and manifest in S3.",
    tags={BUILD_TAG: "true"},  # deploy/dagster.yaml limits runs with this tag to one at a time
)
