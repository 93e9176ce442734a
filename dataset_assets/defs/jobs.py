"""Jobs: one build runs every compile asset once, so the manifest and export rebuild once per
change, never once per split."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS

BUILD_TAG = "dataset_assets/build"

# The manifest's overdue signal is the rebuild sensor's to evaluate (and anyone's from the UI),
# not a fifth step of every build: in a build it would cost a step process (~2-3 s) and show
# "in progress"/"skipped" instead of the overdue message while a build runs or after it fails.
CURRENT_SOURCES_CHECK = dg.AssetCheckKey(dg.AssetKey("manifest"), "built_from_current_sources")

build_job = dg.define_asset_job(
    "build_dataset",
    selection=dg.AssetSelection.assets(*COMPILE_ASSETS)
    - dg.AssetSelection.checks(CURRENT_SOURCES_CHECK),
    description="Compile every source into shards, export and manifest in S3.",
    # deploy/dagster.yaml: runs with BUILD_TAG go one at a time; a failed build is re-executed
    # from its failure up to twice by the daemon (run_retries), then the sensor waits for news.
    tags={BUILD_TAG: "true", "dagster/max_retries": "2"},
)
