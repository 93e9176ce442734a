"""The compile definitions (assets, checks, job), without resources."""

import dagster as dg

from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.defs.checks import COMPILE_CHECKS
from dataset_assets.defs.jobs import build_job
from dataset_assets.defs.quality import QUALITY_CHECKS

BUILD_CHECKS = [*COMPILE_CHECKS, *QUALITY_CHECKS]


def build_defs() -> dg.Definitions:
    return dg.Definitions(assets=COMPILE_ASSETS, asset_checks=BUILD_CHECKS, jobs=[build_job])
