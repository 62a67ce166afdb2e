"""The Flask app in-process (no Gunicorn): JSON everywhere, health codes, the token."""

import pytest

from bookd.app import create_app
from bookd.health import Checks
from bookd.supervision import StateDir


@pytest.fixture
def app_settings(settings, tmp_path):
    return settings.replace(state_dir=tmp_path / "state")


@pytest.fixture
def client(app_settings):
    app_settings.state_dir.mkdir()
    return create_app(app_settings).test_client()


def test_health_is_503_and_says_the_listener_is_down_when_none_runs(client):
    response = client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["statusCode"] == 503
    assert body["body"]["down"] == ["listener"]
    assert body["body"]["services"]["s3"] in ("available", "running")
    assert body["body"]["version"]


def test_health_is_503_naming_localstack_when_it_does_not_answer(app_settings):
    app_settings.state_dir.mkdir()
    gone = app_settings.replace(endpoint_url="http://127.0.0.1:9", check_timeout=0.5)
    response = create_app(gone).test_client().get("/health")
    assert response.status_code == 503
    assert "localstack" in response.get_json()["body"]["down"]


def test_status_reports_the_listener_counts_and_queue_depth(client, queues):
    queues.send('{"id": "1", "title": "t", "genre": "scifi"}')
    body = client.get("/").get_json()
    assert body["listener"]["state"] == "starting"
    assert set(body["messages"]) == {"processed", "uploaded", "failed"}
    assert body["queue"]["visible"] + body["queue"]["in_flight"] == 1


def test_unknown_paths_and_wrong_methods_answer_json(client):
    assert client.get("/nope").get_json()["status"] == 404
    response = client.put("/")
    assert response.status_code == 405
    assert response.get_json()["error"] == "Method Not Allowed"


def test_with_a_control_token_start_and_stop_need_it_and_stop_sticks(app_settings):
    app_settings.state_dir.mkdir()
    client = create_app(app_settings.replace(control_token="s3cret")).test_client()
    assert client.delete("/").status_code == 401
    assert client.delete("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/").status_code == 200
    response = client.delete("/", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 202
    assert response.get_json()["listener"]["state"] == "stopped"
    assert StateDir(app_settings.state_dir).disabled.exists()
    response = client.post("/", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 202
    assert not StateDir(app_settings.state_dir).disabled.exists()


def test_against_aws_health_reports_each_check_it_made(app_settings):
    # The AWS branch, run against LocalStack's endpoint: the same calls, for real.
    checks = Checks(app_settings)._aws_checks()
    assert checks["ok"] is True
    assert set(checks["checks"]) == {
        *(f"s3:{b}" for b in app_settings.all_buckets),
        f"sqs:{app_settings.input_queue}",
    }
    missing = app_settings.replace(buckets={"scifi": "no-such-bucket-for-bookd"})
    failed = Checks(missing)._aws_checks()
    assert failed["ok"] is False
    assert failed["checks"]["s3:no-such-bucket-for-bookd"].startswith("failed")
