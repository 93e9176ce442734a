"""The compile definitions (assets with their checks, the job), without resources."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.defs.jobs import build_job


def build_defs() -> dg.Definitions:
    return dg.Definitions(assets=COMPILE_ASSETS, jobs=[build_job])
