"""The embedded default environment: local S3 server, local Dagster home, the main job."""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml
from rich.console import Console

from dataset_assets.core.config import load_config
from dataset_assets.core.sample import sample_config, write_sample
from dataset_assets.core.sources import expand_local
from dataset_assets.environments import (
    LOCAL_ACCESS_KEY,
    LOCAL_S3_PORT,
    LOCAL_SECRET_KEY,
    local_state_dir,
)
from dataset_assets.storage import SeaweedServer

console = Console()

if TYPE_CHECKING:  # Dagster is imported by the commands that run it
    import dagster as dg
local_s3_app = typer.Typer(no_args_is_help=True, help="The embedded local S3 server (SeaweedFS).")

DEFAULT_CONFIG = Path("dataset.yaml")


def local_server(project_dir: Path) -> SeaweedServer:
    return SeaweedServer(
        local_state_dir(project_dir) / "s3",
        s3_port=LOCAL_S3_PORT,
        access_key=LOCAL_ACCESS_KEY,
        secret_key=LOCAL_SECRET_KEY,
        anonymous_read=True,  # loopback only: the Dagster UI's object links open in a browser
    )


@local_s3_app.command("start")
def local_s3_start() -> None:
    """Start the local SeaweedFS S3 server on 127.0.0.1 (data in .local/s3)."""
    server = local_server(Path.cwd())
    server.start()
    console.print(f"local S3 running at {server.endpoint_url} (data in {server.data_dir})")


@local_s3_app.command("stop")
def local_s3_stop() -> None:
    """Stop the local S3 server (its data stays in .local/s3)."""
    local_server(Path.cwd()).stop()
    console.print("local S3 stopped")


def run_defs(resources: dict[str, object]) -> "dg.Definitions":
    """What ``dataset-assets run`` executes: the compile definitions (assets, checks, the
    ``build_dataset`` job) with ``resources``."""
    import dagster as dg

    from dataset_assets.defs import compile as compile_defs

    return dg.Definitions.merge(compile_defs.build_defs(), dg.Definitions(resources=resources))


@local_s3_app.command("status")
def local_s3_status() -> None:
    """Tell whether the local S3 server is running."""
    server = local_server(Path.cwd())
    state = "running" if server.is_running() else "stopped"
    console.print(f"local S3 {state} ({server.endpoint_url})")


def ensure_sample_sources(config_path: Path) -> None:
    """Write the default config and a synthetic sample when there is nothing to build yet."""
    if not config_path.exists():
        data = {"bucket": "dataset-assets", **sample_config("data/generated")}
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        console.print(f"wrote default config {config_path}")
    cfg = load_config(config_path)
    if not any(expand_local(f) for f in cfg.families) and not any(
        p.startswith("s3://") for f in cfg.families for p in f.paths
    ):
        written = write_sample(config_path.resolve().parent / "data" / "generated")
        console.print(f"no sources found: wrote a synthetic sample ({len(written)} files)")


def run(
    config: Annotated[Path, typer.Option(help="dataset config file")] = DEFAULT_CONFIG,
    keep_s3: Annotated[bool, typer.Option(help="leave the local S3 server running")] = True,
) -> None:
    """Materialize every dataset asset on the embedded default (local S3 + local Dagster home)."""
    import dagster as dg

    from dataset_assets.cli.inspect import print_manifest_summary
    from dataset_assets.core.manifest import Manifest
    from dataset_assets.definitions import make_resources

    project = Path.cwd()
    home = local_state_dir(project) / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    ensure_sample_sources(config)
    cfg = load_config(config)
    server = local_server(project)
    server.start()
    console.print(f"local S3 at {server.endpoint_url}; DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    try:
        with dg.DagsterInstance.get() as instance:
            # The embedded default, whatever AWS_* variables the shell has.
            resources = make_resources({"DATASET_ASSETS_ENV": "local"}, str(config))
            result = (
                run_defs(resources)
                .resolve_job_def("build_dataset")
                .execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                )
            )
        if not result.success:
            console.print("[red]build failed[/red]; see the run in the Dagster UI (make dev)")
            raise typer.Exit(1)
        failed_checks = [c.check_name for c in result.get_asset_check_evaluations() if not c.passed]
        manifest = Manifest.from_json(cfg.manifest_path.read_bytes())
        print_manifest_summary(manifest, str(cfg.manifest_path))
        if failed_checks:
            console.print(f"[red]failed checks: {', '.join(failed_checks)}[/red]")
            raise typer.Exit(1)
    finally:
        if not keep_s3:
            server.stop()
