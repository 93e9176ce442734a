"""Jobs: one build runs every compile asset once, so the manifest and export rebuild once per
change, never once per split."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS

BUILD_TAG = "dataset_assets/build"

build_job = dg.define_asset_job(
    "build_dataset",
    selection=dg.AssetSelection.assets(*COMPILE_ASSETS),
    description="Compile every source into shards, export and manifest in S3.",
    # deploy/dagster.yaml: runs with BUILD_TAG go one at a time; a failed build is re-executed
    # from its failure up to twice by the daemon (run_retries), then the sensor waits for news.
    tags={BUILD_TAG: "true", "dagster/max_retries": "2"},
)
