"""Settings from the environment: defaults, overrides and clear errors."""

import pytest

from bookd.config import Settings
from bookd.errors import ConfigError


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
    assert s.max_receive_count == 5


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
    ("env", "named"),
    [
        ({"BOOKD_BUCKETS": "scifi"}, "BOOKD_BUCKETS"),
        ({"BOOKD_BUCKETS": ","}, "BOOKD_BUCKETS"),
        ({"BOOKD_MAX_RECEIVE_COUNT": "five"}, "BOOKD_MAX_RECEIVE_COUNT"),
        ({"BOOKD_WAIT_TIME": "21"}, "BOOKD_WAIT_TIME"),
        ({"BOOKD_CHECK_TIMEOUT": "-1"}, "BOOKD_CHECK_TIMEOUT"),
    ],
)
def test_a_bad_setting_is_refused_with_its_name(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)
