"""The Flask app in-process (no Gunicorn): JSON everywhere, health codes, who may control it."""

import json
import time

import pytest

from bookd.supervision.lock import StateDir, hold_listener_lock
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


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_gets_the_console_and_every_other_client_the_json(client):
    page = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "<title>bookd on " in page.get_data(as_text=True)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    for accept in ("*/*", "application/json", None):
        answer = client.get("/", headers={"Accept": accept} if accept else {})
        assert answer.mimetype == "application/json", accept
        assert set(answer.get_json()) == {"listener", "messages", "queue"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://elsewhere.example"},
        {"Origin": "http://localhost:9999"},
        {"Origin": "null"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"), [("post", "/"), ("delete", "/"), ("post", "/dead-letters/redrive")]
)
def test_an_action_another_site_s_page_asks_for_is_refused(client, headers, method, path):
    response = getattr(client, method)(path, headers=headers, json={"dry_run": True})
    assert response.status_code == 403
    assert "another site" in response.get_json()["message"]


def test_the_page_s_own_requests_are_taken(client, app_settings):
    own = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    assert client.delete("/", headers=own).status_code == 202
    assert StateDir(app_settings.state_dir).disabled.exists()
    assert client.post("/", headers=own).status_code == 202
    assert not StateDir(app_settings.state_dir).disabled.exists()


def test_without_a_token_a_host_that_is_not_this_machine_may_not_steer(client, app_settings):
    # A page whose own name now resolves to 127.0.0.1 (DNS rebinding) sends its own name.
    rebound = {"Host": "attacker.example"}
    assert client.delete("/", headers=rebound).status_code == 401
    assert not StateDir(app_settings.state_dir).disabled.exists()
    assert client.get("/console.json", headers=rebound).get_json()["can_control"] is False
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000"):
        data = client.get("/console.json", headers={"Host": host}).get_json()
        assert data["can_control"] is True, host


def test_the_console_data_hides_details_from_who_may_not_steer(app_settings):
    app_settings.state_dir.mkdir()
    client = create_app(app_settings.replace(control_token="s3cret")).test_client()
    state = StateDir(app_settings.state_dir)
    since = time.time() - 30
    state.write_json(
        state.status,
        {
            "pid": 4242,
            "state": "running",
            "dependencies": {
                "s3": {"state": "down", "cause": "PutObject on bucket b: X", "since": since}
            },
            "dead_letters": {"reasons": [{"reason": "invalid-json", "sample_detail": "{sec"}]},
        },
    )
    with hold_listener_lock(state, timeout=1):  # as a running listener does
        outsider = client.get("/console.json").get_json()
        insider = client.get("/console.json", headers={"Authorization": "Bearer s3cret"})
    assert outsider["can_control"] is False
    assert outsider["listener"]["pid"] is None
    assert outsider["dependencies"]["s3"] == {"state": "down", "since": since}
    assert outsider["dead_letters"]["reasons"][0]["sample_detail"] is None
    assert outsider["pause"]["paused"] is True and 29 <= outsider["pause"]["seconds"] <= 40
    insider = insider.get_json()
    assert insider["can_control"] is True and insider["listener"]["pid"] == 4242
    assert insider["dependencies"]["s3"]["cause"] == "PutObject on bucket b: X"
    assert insider["dead_letters"]["reasons"][0]["sample_detail"] == "{sec"


def test_a_redrive_needs_a_reason_and_a_dry_run_flag_of_the_right_types(client):
    response = client.post("/dead-letters/redrive", json={"reason": 3})
    assert response.status_code == 400
    response = client.post("/dead-letters/redrive", json={"dry_run": "yes"})
    assert response.status_code == 400
