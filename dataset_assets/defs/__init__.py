"""The Dagster layer: resources, IO manager, assets, checks, sensors, jobs. Thin by design."""

import warnings

import dagster as dg

# Two Dagster APIs this layer relies on are marked beta in 1.13: ``backfill_policy`` (one run per
# migrated file) and source code references (the UI's links from each asset to its code). Their
# BetaWarnings ask nothing of a user, so ``make run`` / ``make dev`` do not print them.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
