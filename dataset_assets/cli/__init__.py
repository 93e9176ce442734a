"""The ``dataset-assets`` command line: run, build, inspect, local-s3, migrate.

Every command calls the same library code as the Dagster assets.
"""

import typer

from dataset_assets.cli.inspect import inspect
from dataset_assets.cli.local import local_s3_app, run
from dataset_assets.cli.migrate import migrate

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command()(run)
app.command()(inspect)
app.command()(migrate)
app.add_typer(local_s3_app, name="local-s3")


def main() -> None:
    app()
