"""The ``dataset-assets`` command line: run, inspect, verify, gc, migrate, local-s3.

Every command calls the same library code as the Dagster assets.
"""

import typer

from dataset_assets.cli.inspect import inspect
from dataset_assets.cli.local import local_s3_app, run
from dataset_assets.cli.maintenance import gc, verify
from dataset_assets.cli.migrate import migrate

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command()(run)
app.command()(inspect)
app.command()(migrate)
app.command()(verify)
app.command()(gc)
app.add_typer(local_s3_app, name="local-s3")


def main() -> None:
    app()
