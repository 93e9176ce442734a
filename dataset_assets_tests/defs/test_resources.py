"""The ``s3`` resource: dagster-aws's S3Resource, secrets as EnvVar names, one client per process.

The GraphQL test loads the real ``dataset_assets.definitions`` in a code-server process (as
``dagster dev`` does) and searches everything the UI can ask about resources for the secret.
"""

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from dagster_graphql.test.utils import (
    define_out_of_process_context,
    execute_dagster_graphql,
    infer_repository_selector,
)

import dataset_assets.definitions as definitions_module
from dataset_assets.core.errors import ConfigError
from dataset_assets.definitions import make_resources, make_s3_resource
from dataset_assets.defs.resources import ObjectStoreResource
from dataset_assets.environments import LOCAL_SECRET_KEY, LOCAL_SECRET_KEY_ENV
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import write_build_config

SECRET = f"SECRET{uuid.uuid4().hex.upper()}"

RESOURCES_QUERY = """
query Resources($selector: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
    __typename
    ... on ResourceDetailsList {
      results {
        name
        description
        resourceType
        configFields { name description isRequired configTypeKey }
        configuredValues { key value type }
      }
    }
  }
  utilizedEnvVarsOrError(repositorySelector: $selector) {
    ... on EnvVarWithConsumersList { results { envVarName } }
  }
}
"""


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    config = write_build_config(tmp_path, "resource-test-bucket", records_per_family=5)
    monkeypatch.setenv("DATASET_ASSETS_ENV", "aws")
    monkeypatch.setenv("DATASET_ASSETS_CONFIG", str(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield config


def test_graphql_resource_view_shows_the_env_var_name_never_the_secret(aws_env: Path) -> None:
    with (
        dg.instance_for_test() as instance,
        define_out_of_process_context(definitions_module.__file__, "defs", instance) as context,
    ):
        result = execute_dagster_graphql(
            context, RESOURCES_QUERY, {"selector": infer_repository_selector(context)}
        )
    assert result.errors is None, result.errors
    dumped = json.dumps(result.data)
    assert SECRET not in dumped

    resources = {r["name"]: r for r in result.data["allTopLevelResourceDetailsOrError"]["results"]}
    s3 = resources["s3"]
    assert s3["resourceType"].endswith("ObjectStoreResource")
    values = {v["key"]: (v["type"], v["value"]) for v in s3["configuredValues"]}
    assert values["aws_secret_access_key"] == ("ENV_VAR", "AWS_SECRET_ACCESS_KEY")
    assert values["aws_access_key_id"] == ("ENV_VAR", "AWS_ACCESS_KEY_ID")
    assert values["endpoint_url"] == ("VALUE", json.dumps("http://127.0.0.1:9"))
    assert values["region_name"] == ("VALUE", json.dumps("eu-west-3"))
    fields = {f["name"]: f for f in s3["configFields"]}
    # dagster-aws's S3Resource fields, every one with a description
    for name in ("endpoint_url", "region_name", "profile_name", "max_attempts"):
        assert name in fields
    undescribed = [
        (r["name"], f["name"])
        for r in resources.values()
        for f in r["configFields"]
        if not f["description"]
    ]
    assert undescribed == []
    env_vars = {e["envVarName"] for e in result.data["utilizedEnvVarsOrError"]["results"]}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env_vars


def test_s3_resource_is_dagster_aws_s3resource_with_env_var_keys(aws_env: Path) -> None:
    import os

    s3 = make_s3_resource(os.environ)
    assert isinstance(s3, S3Resource)
    assert isinstance(s3.aws_secret_access_key, dg.EnvVar)
    assert s3.settings().secret_access_key == SECRET
    assert s3.settings().region == "eu-west-3"


def test_local_environment_keys_come_from_project_variables_not_the_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    s3 = make_s3_resource({"DATASET_ASSETS_ENV": "local"})
    assert s3.aws_secret_access_key == dg.EnvVar(LOCAL_SECRET_KEY_ENV)
    assert s3.settings().secret_access_key == LOCAL_SECRET_KEY
    assert s3.settings().endpoint_url == "http://127.0.0.1:8333"


def test_aws_environment_without_keys_leaves_credentials_to_the_chain() -> None:
    s3 = make_s3_resource({"DATASET_ASSETS_ENV": "aws", "AWS_PROFILE": "training"})
    assert s3.aws_access_key_id is None and s3.aws_secret_access_key is None
    assert s3.settings().profile == "training"


def test_temporary_credentials_are_left_to_the_chain() -> None:
    environ = {
        "DATASET_ASSETS_ENV": "aws",
        "AWS_ACCESS_KEY_ID": "ASIAX",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "t",
    }
    s3 = make_s3_resource(environ)
    assert s3.aws_access_key_id is None


def test_unsupported_s3resource_options_fail_naming_them() -> None:
    with pytest.raises(ConfigError, match="use_unsigned_session, aws_session_token"):
        ObjectStoreResource(use_unsigned_session=True, aws_session_token="t").settings()


def test_from_settings_round_trips_every_setting() -> None:
    settings = S3Settings(
        endpoint_url="http://127.0.0.1:1",
        region="r",
        access_key_id="a",
        secret_access_key="s",
        addressing_style="virtual",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_attempts=3,
    )
    assert ObjectStoreResource.from_settings(settings).settings() == settings


def test_store_and_client_are_built_once_per_process(seaweed: S3Settings) -> None:
    s3 = ObjectStoreResource.from_settings(seaweed)
    again = ObjectStoreResource.from_settings(seaweed)
    assert s3.store("b-once", 5 * 1024 * 1024) is again.store("b-once", 5 * 1024 * 1024)
    s3.get_client()
    started = time.perf_counter()
    clients = {id(again.get_client()) for _ in range(20)}
    assert len(clients) == 1
    assert time.perf_counter() - started < 0.2  # a boto3 session per call costs ~0.4 s each


def test_resources_keep_their_keys(aws_env: Path) -> None:
    resources: dict[str, Any] = make_resources({"DATASET_ASSETS_ENV": "aws"}, str(aws_env))
    assert set(resources) == {"dataset", "s3", "s3_publish"}
