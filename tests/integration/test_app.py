"""The Flask app in-process (no Gunicorn): JSON everywhere, health codes, who may control it."""

import json

import pytest

from bookd.supervision.lock import StateDir
from bookd.web.app import create_app
from bookd.web.checks import Checks


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


ELSEWHERE = {"REMOTE_ADDR": "10.1.2.3"}
"""A caller on another host, as a container's published port sees every caller."""


def test_without_a_token_only_loopback_callers_may_start_or_stop(app_settings):
    app_settings.state_dir.mkdir()
    client = create_app(app_settings).test_client()
    for method in (client.delete, client.post):
        response = method("/", environ_base=ELSEWHERE)
        assert response.status_code == 401
        assert "BOOKD_CONTROL_TOKEN" in response.get_json()["message"]
    assert not StateDir(app_settings.state_dir).disabled.exists()
    assert client.delete("/").status_code == 202, "from loopback"
    assert client.post("/").status_code == 202


def test_with_a_token_it_is_needed_from_loopback_too_and_works_from_anywhere(app_settings):
    app_settings.state_dir.mkdir()
    client = create_app(app_settings.replace(control_token="s3cret")).test_client()
    assert client.delete("/").status_code == 401, "loopback without the token"
    good = {"Authorization": "Bearer s3cret"}
    assert client.delete("/", headers=good, environ_base=ELSEWHERE).status_code == 202


def test_callers_who_may_not_control_see_states_not_endpoints_or_error_texts(app_settings):
    app_settings.state_dir.mkdir()
    gone = app_settings.replace(endpoint_url="http://127.0.0.1:9", check_timeout=0.5)
    client = create_app(gone).test_client()
    outside = client.get("/health", environ_base=ELSEWHERE).get_json()
    inside = client.get("/health").get_json()
    assert "127.0.0.1:9" in json.dumps(inside), "the details, for who may control bookd"
    text = json.dumps(outside)
    assert "127.0.0.1" not in text and "did not answer" not in text
    assert outside["body"]["down"] == inside["body"]["down"]
    status = client.get("/", environ_base=ELSEWHERE).get_json()
    assert "127.0.0.1" not in json.dumps(status)


def test_a_state_file_with_unexpected_content_is_rewritten_not_a_500(app_settings):
    app_settings.state_dir.mkdir()
    state = StateDir(app_settings.state_dir)
    state.restarts.write_text('{"quick_deaths": "many", "bogus": 1}')
    state.status.write_text('{"pid": "not a pid", "started_at": [], "dependencies": 7}')
    client = create_app(app_settings).test_client()
    for path in ("/health", "/", "/livez", "/readyz"):
        assert client.get(path).status_code in (200, 503), path
    assert json.loads(state.restarts.read_text()) == {
        "last_start_at": 0.0,
        "died_at": 0.0,
        "quick_deaths": 0,
    }


def test_liveness_holds_while_stopped_on_purpose_and_never_calls_aws(app_settings):
    app_settings.state_dir.mkdir()
    # An endpoint that would hang for its whole timeout, were it called.
    client = create_app(app_settings.replace(endpoint_url="http://127.0.0.1:9")).test_client()
    assert client.get("/livez").status_code == 503, "no listener holds the lock"
    client.delete("/")
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json()["listener"]["state"] == "stopped"
    assert client.get("/readyz").status_code == 503, "stopped is alive, not ready"
