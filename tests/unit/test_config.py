"""Settings from the environment: defaults, overrides and clear errors."""

from pathlib import Path

import pytest

from bookd.core.config import Settings, markdown_table
from bookd.core.errors import ConfigError


def test_defaults_point_at_the_host_localstack_with_test_credentials():
    s = Settings.from_env({})
    assert s.endpoint_url == "http://127.0.0.1:4566"
    assert (s.access_key_id, s.secret_access_key) == ("test", "test")
    assert (s.input_queue, s.output_queue, s.dead_letter_queue) == (
        "InputQueue.fifo",
        "OutputQueue.fifo",
        "InputQueue-dlq.fifo",
    )
    assert dict(s.buckets) == {"scifi": "scifi", "romance": "romance"}
    # The retry budget is the listener's (attempts and time); SQS's redrive is a backstop.
    assert (s.max_attempts, s.retry_for, s.max_receive_count) == (5, 300, 100)


def test_an_empty_endpoint_means_aws_with_its_own_credential_chain():
    s = Settings.from_env({"BOOKD_ENDPOINT_URL": "", "AWS_REGION": "eu-west-1"})
    assert s.endpoint_url is None
    assert s.access_key_id is None
    assert s.region == "eu-west-1"


def test_the_bucket_map_is_read_from_genre_equals_bucket_pairs():
    s = Settings.from_env({"BOOKD_BUCKETS": " SciFi = books-sf , romance=books-ro"})
    assert dict(s.buckets) == {"scifi": "books-sf", "romance": "books-ro"}
    assert s.all_buckets == ["books-ro", "books-sf"]


@pytest.mark.parametrize(
    ("endpoint", "over_tls"),
    [("http://127.0.0.1:4566", False), ("https://localhost:4566", True), ("", True)],
)
def test_calls_go_over_tls_to_aws_and_to_an_https_endpoint(endpoint, over_tls):
    assert Settings.from_env({"BOOKD_ENDPOINT_URL": endpoint}).over_tls is over_tls


def test_a_ca_bundle_must_name_a_file_that_is_there(tmp_path, monkeypatch):
    # A path that names nothing would fail every TLS call later, as if S3 and SQS were down.
    with pytest.raises(ConfigError, match="AWS_CA_BUNDLE='none.pem' names no file"):
        Settings.from_env({"AWS_CA_BUNDLE": "none.pem"})
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({"AWS_CA_BUNDLE": "ca.pem"})
    assert s.ca_bundle == tmp_path / "ca.pem"
    assert Settings.from_env(s.to_env()).ca_bundle == s.ca_bundle
    assert Settings.from_env({"AWS_CA_BUNDLE": ""}).ca_bundle is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BOOKD_BUCKETS": "scifi"}, "BOOKD_BUCKETS"),
        ({"BOOKD_BUCKETS": ","}, "BOOKD_BUCKETS"),
        ({"BOOKD_MAX_RECEIVE_COUNT": "five"}, "BOOKD_MAX_RECEIVE_COUNT"),
        ({"BOOKD_WAIT_TIME": "21"}, "BOOKD_WAIT_TIME"),
        ({"BOOKD_CHECK_TIMEOUT": "-1"}, "BOOKD_CHECK_TIMEOUT"),
        # float() takes these; a timeout of nan or inf would fail much later.
        ({"BOOKD_CHECK_TIMEOUT": "nan"}, "BOOKD_CHECK_TIMEOUT"),
        ({"BOOKD_RETRY_FOR": "inf"}, "BOOKD_RETRY_FOR"),
        ({"BOOKD_LOG_LEVEL": "loud"}, "BOOKD_LOG_LEVEL"),
        ({"BOOKD_INPUT_QUEUE": "Input"}, "BOOKD_INPUT_QUEUE"),
        ({"BOOKD_BUCKET_OWNER": "me"}, "BOOKD_BUCKET_OWNER"),
        ({"BOOKD_ENDPOINT_URL": "localstack:4566"}, "BOOKD_ENDPOINT_URL"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("http://127.0.0.1:4566", True),
        ("http://localhost:4566", True),
        ("http://[::1]:4566", True),
        ("http://localstack:4566", False),
        ("https://sqs.example.com", False),
    ],
)
def test_made_up_credentials_are_used_only_for_an_endpoint_on_loopback(endpoint, local):
    s = Settings.from_env({"BOOKD_ENDPOINT_URL": endpoint})
    assert (s.access_key_id == "test") is local
    explicit = Settings.from_env(
        {"BOOKD_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    )
    assert (explicit.access_key_id, explicit.secret_access_key) == ("a", "b")


def test_the_control_token_can_come_from_a_mounted_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    s = Settings.from_env({"BOOKD_CONTROL_TOKEN_FILE": str(secret)})
    assert s.control_token == "s3cret"
    secret.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        Settings.from_env({"BOOKD_CONTROL_TOKEN_FILE": str(secret)})
    with pytest.raises(ConfigError, match="not both"):
        Settings.from_env({"BOOKD_CONTROL_TOKEN_FILE": str(secret), "BOOKD_CONTROL_TOKEN": "x"})


def test_settings_survive_the_trip_through_another_process_environment():
    s = Settings.from_env(
        {"BOOKD_BUCKETS": "a=b,c=d", "BOOKD_RETRY_FOR": "1.5", "BOOKD_ENDPOINT_URL": ""}
    )
    assert Settings.from_env(s.to_env()) == s


def test_the_readme_settings_table_is_the_one_the_declarations_make():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, "run `bookd settings --markdown` and paste it in"
