"""The references IO manager: stores each asset's output — a typed reference to what the asset
published (S3 keys, sizes, hashes; never bytes, never local paths) — as JSON in S3, scoped to the
run that produced it, and loads it back as the type the downstream input declares.

Publishing itself happens in the assets (through :class:`~dataset_assets.pipeline.build.Build`),
so this IO manager maps and stores and decides nothing. It is not dagster-aws's pickle IO manager
on purpose: those pickle whole values in memory and never verify or clean up; ours stores a few
KB per asset, readable by any step on any machine that reaches the bucket.
"""

from typing import Any

import dagster as dg
from pydantic import TypeAdapter

from dataset_assets.core.errors import ObjectNotFoundError
from dataset_assets.core.layout import run_ref_key
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource


def _adapter(context: dg.InputContext | dg.OutputContext) -> TypeAdapter[Any]:
    return TypeAdapter(context.dagster_type.typing_type)


class S3PublishIOManager(dg.ConfigurableIOManager):
    """Stores run-scoped typed references of the build's assets in S3."""

    dataset: dg.ResourceDependency[DatasetConfigResource]
    s3: dg.ResourceDependency[ObjectStoreResource]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        cfg = self.dataset.load()
        key = run_ref_key(cfg.prefix, context.run_id, "__".join(context.asset_key.path))
        data = _adapter(context).dump_json(obj)
        self.s3.store_for(cfg).put_bytes(key, data, content_type="application/json")

    def load_input(self, context: dg.InputContext) -> Any:
        cfg = self.dataset.load()
        store = self.s3.store_for(cfg)
        asset = "__".join(context.asset_key.path)
        upstream = context.upstream_output
        data = None
        if upstream is not None:  # this run, or the parent of a re-execution
            try:
                data = store.get_bytes(run_ref_key(cfg.prefix, upstream.run_id, asset))
            except ObjectNotFoundError:
                data = None
        if data is None:
            # The upstream asset was not produced by this run (or its parent): use the run of
            # its latest materialization, e.g. when only the manifest is materialized.
            data = store.get_bytes(run_ref_key(cfg.prefix, _latest_run(context), asset))
        return _adapter(context).validate_json(data)


def _latest_run(context: dg.InputContext) -> str:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None:
        raise dg.DagsterInvariantViolationError(
            f"asset {context.asset_key.to_user_string()} has never been materialized: "
            "materialize it (or the whole build_dataset job) first"
        )
    return event.run_id
