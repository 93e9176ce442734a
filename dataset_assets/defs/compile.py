"""The compile definitions (assets with their checks, the job), without resources."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.defs.jobs import build_job


def build_defs() -> dg.Definitions:
    # Each asset links to its source file and line in the UI (dagster/code_references).
    assets = dg.with_source_code_references(COMPILE_ASSETS)
    return dg.Definitions(assets=assets, jobs=[build_job])
