"""The compile definitions (assets with their checks, the job), without resources."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.defs.jobs import build_job
from dataset_assets.defs.sensors import built_from_current_sources


def build_defs() -> dg.Definitions:
    """The build's assets, the manifest's ``built_from_current_sources`` check (defined here,
    next to the job whose selection leaves it out: a job naming a check its definitions lack
    does not resolve) and the ``build_dataset`` job."""
    # Each asset links to its source file and line in the UI (dagster/code_references).
    assets = dg.with_source_code_references(COMPILE_ASSETS)
    return dg.Definitions(
        assets=assets, asset_checks=[built_from_current_sources], jobs=[build_job]
    )
