"""The Dagster layer: resources, IO manager, assets, checks, sensors, jobs. Thin by design."""
