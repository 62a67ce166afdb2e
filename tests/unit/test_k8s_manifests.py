"""The Kubernetes manifests in deploy/k8s: schemas, KEDA's fields, and agreement with the image.

The core objects pass kubernetes-validate (offline schemas, pinned in requirements-dev.txt) in
strict mode, against Kubernetes 1.33 (the oldest release these manifests are meant for) and
1.37 (the newest the tool ships schemas for). KEDA's objects are custom resources it has no
schema for, so their fields are checked here against KEDA's documentation (cited in
deploy/k8s/keda.yaml). No test touches the network or a cluster.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from bookd.core.config import Settings

# bookd's defaults, as Settings declares them.
DEFAULTS = Settings()
DEFAULT_BUCKETS = DEFAULTS.to_env()["BOOKD_BUCKETS"]
DEFAULT_DEAD_LETTER_QUEUE = DEFAULTS.dead_letter_queue
DEFAULT_INPUT_QUEUE = DEFAULTS.input_queue
DEFAULT_OUTPUT_QUEUE = DEFAULTS.output_queue
DEFAULT_STATE_DIR = str(DEFAULTS.state_dir)

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
SUPERVISORD_CONF = ROOT / "deploy" / "supervisord.conf"
IAM_POLICY = ROOT / "deploy" / "iam-policy.json"

KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
KEDA_API_VERSION = "keda.sh/v1alpha1"

# --- what KEDA documents (keda.sh/docs, 2.13 and later) --------------------------------
SCALED_OBJECT_SPEC_FIELDS = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
"""The ScaledObject specification's top-level spec fields."""

SQS_TRIGGER_METADATA = {
    "queueURL",
    "queueURLFromEnv",
    "queueLength",
    "activationQueueLength",
    "scaleOnInFlight",
    "scaleOnDelayed",
    "awsRegion",
    "awsEndpoint",
    "identityOwner",
}
"""The aws-sqs-queue scaler's metadata parameters."""

AWS_POD_IDENTITY_FIELDS = {"provider", "roleArn", "identityOwner"}
"""podIdentity fields of the `aws` provider; roleArn and identityOwner exclude each other."""

CREDENTIAL_PARAMETERS = ("awsAccessKeyID", "awsSecretAccessKey", "awsSessionToken", "awsRoleArn")
"""The aws-sqs-queue scaler's key and role parameters, which a pod identity makes needless."""


# --- helpers ---------------------------------------------------------------------------


def kustomization() -> dict:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


def manifest_files() -> list[Path]:
    """The files kustomization.yaml applies, in its order."""
    return [K8S_DIR / name for name in kustomization()["resources"]]


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def is_keda(doc: dict) -> bool:
    return doc["apiVersion"] == KEDA_API_VERSION


def core_files() -> list[Path]:
    """Files of built-in Kubernetes objects only (kubernetes-validate has no KEDA schemas)."""
    return [path for path in manifest_files() if not any(map(is_keda, documents(path)))]


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    """Every applied object by kind (each kind appears once)."""
    found: dict[str, dict] = {}
    for path in manifest_files():
        for doc in documents(path):
            assert doc["kind"] not in found, f"a second {doc['kind']} in {path.name}"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def pod(objects) -> dict:
    return objects["Deployment"]["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod) -> dict:
    (bookd,) = pod["containers"]
    return bookd


@pytest.fixture(scope="module")
def env(container) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.fixture(scope="module")
def trigger(objects) -> dict:
    (only,) = objects["ScaledObject"]["spec"]["triggers"]
    return only


def dockerfile_instructions(name: str) -> list[str]:
    parser = DockerfileParser(path=str(DOCKERFILE))  # read only: never assign .content
    return [i["value"] for i in parser.structure if i["instruction"] == name]


def supervisord_conf() -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    assert conf.read(SUPERVISORD_CONF), f"{SUPERVISORD_CONF} is missing"
    return conf


def image_path(conf_value: str) -> PurePosixPath:
    """A supervisord.conf path as it resolves in the image (the repo is /app)."""
    here = "/app/" + SUPERVISORD_CONF.parent.relative_to(ROOT).as_posix()
    return PurePosixPath(os.path.normpath(conf_value.replace("%(here)s", here)))


def validate(*paths: Path, version: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- files and schemas -----------------------------------------------------------------


def test_kustomization_applies_every_manifest_in_the_folder():
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(on_disk) == sorted(p.name for p in manifest_files())


def test_no_manifest_mixes_keda_objects_with_core_ones():
    for path in manifest_files():
        kinds = {is_keda(doc) for doc in documents(path)}
        assert len(kinds) == 1, f"{path.name} mixes KEDA and core objects"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_manifests_pass_kubernetes_validate_strict(version):
    paths = core_files()
    result = validate(*paths, version=version)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # An unknown kind only warns, so count what was really checked.
    assert "Couldn't find schema" not in output, output
    assert output.count("passed for resource") == sum(len(documents(p)) for p in paths), output


def test_kubernetes_validate_strict_rejects_a_misspelt_field(tmp_path):
    deployment = K8S_DIR / "deployment.yaml"
    bad = tmp_path / "deployment.yaml"
    bad.write_text(deployment.read_text().replace("terminationGracePeriodSeconds", "gracePeriod"))
    result = validate(bad, version=KUBERNETES_VERSIONS[0])
    assert result.returncode != 0 and "gracePeriod" in result.stdout + result.stderr


# --- the pod and the image ---------------------------------------------------------------


def test_probes_call_livez_and_readyz_on_the_named_http_port(container):
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["timeoutSeconds"] < container[probe]["periodSeconds"], probe


def test_http_port_is_the_one_the_image_exposes_and_binds(container):
    (port,) = container["ports"]
    (exposed,) = dockerfile_instructions("EXPOSE")
    bind = DockerfileParser(path=str(DOCKERFILE)).envs["BOOKD_BIND"]
    assert port == {"name": "http", "containerPort": int(exposed), "protocol": "TCP"}
    assert bind == f"0.0.0.0:{exposed}"


def test_service_sends_port_8000_to_the_named_port_of_the_deployments_pods(objects):
    service = objects["Service"]["spec"]
    (port,) = service["ports"]
    assert port == {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    template_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["selector"] == selector
    assert selector.items() <= template_labels.items()


def test_disruption_budget_covers_the_deployments_pods_and_lets_a_drain_proceed(objects):
    budget = objects["PodDisruptionBudget"]["spec"]
    assert budget["selector"] == objects["Deployment"]["spec"]["selector"]
    assert budget.get("maxUnavailable") == 1 and "minAvailable" not in budget


def test_grace_period_outlasts_the_prestop_sleep_plus_supervisords_stop(pod, container):
    conf = supervisord_conf()
    waits = [
        conf.getint(section, "stopwaitsecs", fallback=10)  # supervisord's default
        for section in conf.sections()
        if section.startswith("program:")
    ]
    assert waits, f"no [program:...] sections in {SUPERVISORD_CONF}"
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + max(waits)


def test_pod_runs_as_the_images_user_unprivileged_on_a_read_only_root(pod, container):
    (user,) = dockerfile_instructions("USER")
    uid, gid = map(int, user.split(":"))
    assert uid != 0
    for context in (pod["securityContext"], container["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["fsGroup"] == gid
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(dockerfile_instructions("ENV"))


def test_every_place_bookd_writes_is_on_an_empty_dir(pod, container, env):
    # Given the writable mounts
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = [
        PurePosixPath(m["mountPath"])
        for m in container["volumeMounts"]
        if m["name"] in empty_dirs and not m.get("readOnly")
    ]
    # When bookd writes its state, supervisord its log and pid, and Python its temp files
    (workdir,) = dockerfile_instructions("WORKDIR")
    state_dir = PurePosixPath(workdir) / env.get("BOOKD_STATE_DIR", DEFAULT_STATE_DIR)
    conf = supervisord_conf()
    supervisord_files = [image_path(conf.get("supervisord", k)) for k in ("logfile", "pidfile")]
    # Then each lands on an emptyDir
    for path in (state_dir, *supervisord_files, PurePosixPath("/tmp")):
        assert any(path.is_relative_to(mount) for mount in writable), f"{path} is read-only"


def test_state_dir_is_the_images_default_spelled_out(env):
    (workdir,) = dockerfile_instructions("WORKDIR")
    assert env["BOOKD_STATE_DIR"] == f"{workdir}/{DEFAULT_STATE_DIR}"


def test_control_token_file_is_the_secret_key_mounted_read_only(pod, container, env):
    assert "BOOKD_CONTROL_TOKEN" not in env, "the token itself never sits in the manifest"
    token_file = PurePosixPath(env["BOOKD_CONTROL_TOKEN_FILE"])
    (secret_volume,) = [v for v in pod["volumes"] if "secret" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == secret_volume["name"]]
    assert mount["readOnly"] is True
    (item,) = secret_volume["secret"]["items"]
    assert token_file == PurePosixPath(mount["mountPath"]) / item["path"]
    assert item["key"] == "control-token"
    assert secret_volume["secret"]["defaultMode"] == 0o440, "readable by bookd's group only"


def test_environment_is_real_aws_with_the_default_queues_and_buckets(container, env):
    assert env["BOOKD_ENDPOINT_URL"] == "", "empty means real AWS"
    names = {e["name"] for e in container["env"]}
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert env["BOOKD_INPUT_QUEUE"] == DEFAULT_INPUT_QUEUE
    assert env["BOOKD_OUTPUT_QUEUE"] == DEFAULT_OUTPUT_QUEUE
    assert env["BOOKD_DEAD_LETTER_QUEUE"] == DEFAULT_DEAD_LETTER_QUEUE
    assert env["BOOKD_BUCKETS"] == DEFAULT_BUCKETS
    assert re.fullmatch(r"\d{12}", env["BOOKD_BUCKET_OWNER"])
    assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", env["AWS_REGION"])


def test_pod_has_cpu_and_memory_requests_and_limits(container):
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys(), kind


def test_pod_uses_the_service_account_that_names_an_iam_role(objects, pod):
    account = objects["ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", role)
    assert pod["automountServiceAccountToken"] is False, "bookd never calls the Kubernetes API"


def test_service_links_are_off_so_no_bookd_variables_are_injected(pod):
    assert pod["enableServiceLinks"] is False


def test_deployment_leaves_the_replica_count_to_keda(objects):
    assert "replicas" not in objects["Deployment"]["spec"]


# --- KEDA ----------------------------------------------------------------------------------


def test_keda_objects_use_only_documented_fields(objects):
    for kind in ("ScaledObject", "TriggerAuthentication"):
        assert objects[kind]["apiVersion"] == KEDA_API_VERSION, kind
    assert objects["ScaledObject"]["spec"].keys() <= SCALED_OBJECT_SPEC_FIELDS
    assert objects["TriggerAuthentication"]["spec"].keys() == {"podIdentity"}
    assert objects["TriggerAuthentication"]["spec"]["podIdentity"].keys() <= (
        AWS_POD_IDENTITY_FIELDS
    )


def test_scaled_object_scales_the_deployment_between_one_and_a_few_pods(objects):
    spec = objects["ScaledObject"]["spec"]
    target = spec["scaleTargetRef"]
    assert target["name"] == objects["Deployment"]["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], "one pod serves the API"
    assert isinstance(spec["cooldownPeriod"], int) and spec["cooldownPeriod"] > 0


def test_sqs_trigger_sets_documented_metadata_as_strings(trigger):
    assert trigger["type"] == "aws-sqs-queue"
    metadata = trigger["metadata"]
    assert metadata.keys() <= SQS_TRIGGER_METADATA
    assert {"queueURL", "queueLength", "awsRegion"} <= metadata.keys()
    # KEDA's trigger metadata is a map of strings: an unquoted number is refused.
    assert all(isinstance(v, str) for v in metadata.values()), metadata
    assert int(metadata["queueLength"]) > 0
    assert "identityOwner" not in metadata, "deprecated since 2.13; the podIdentity decides"


def test_sqs_trigger_watches_the_input_queue_bookd_reads_and_may_read(trigger, env):
    url = urlsplit(trigger["metadata"]["queueURL"])
    account, name = url.path.strip("/").split("/")
    region = trigger["metadata"]["awsRegion"]
    assert url.scheme == "https" and url.netloc == f"sqs.{region}.amazonaws.com"
    assert name == DEFAULT_INPUT_QUEUE == env["BOOKD_INPUT_QUEUE"]
    assert region == env["AWS_REGION"]
    # KEDA uses bookd's role (identityOwner: workload), whose policy must allow the read.
    statements = json.loads(IAM_POLICY.read_text())["Statement"]
    allowed = {
        arn
        for s in statements
        if "sqs:GetQueueAttributes" in s["Action"]
        for arn in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    assert f"arn:aws:sqs:{region}:{account}:{name}" in allowed


def test_trigger_authenticates_with_the_workloads_pod_identity_and_holds_no_keys(objects, trigger):
    auth = objects["TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert trigger["authenticationRef"].get("kind", "TriggerAuthentication") == (
        "TriggerAuthentication"
    )
    identity = auth["spec"]["podIdentity"]
    assert identity["provider"] == "aws"
    assert identity["identityOwner"] == "workload" and "roleArn" not in identity
    text = json.dumps([auth, trigger])
    for parameter in (*CREDENTIAL_PARAMETERS, "AWS_SECRET_ACCESS_KEY", "secretTargetRef"):
        assert parameter not in text, parameter
    # identityOwner: workload reads the IRSA annotation of the Deployment's ServiceAccount.
    assert "eks.amazonaws.com/role-arn" in objects["ServiceAccount"]["metadata"]["annotations"]


# --- placeholders --------------------------------------------------------------------------


def test_one_placeholder_account_and_region_run_through_the_deploy_files():
    files = [*manifest_files(), IAM_POLICY, ROOT / "deploy" / "iam-provision-policy.json"]
    text = "\n".join(p.read_text() for p in files)
    assert set(re.findall(r"\b\d{12}\b", text)) == {"123456789012"}
    assert set(re.findall(r"\b[a-z]{2}-[a-z]+-\d\b", text)) == {"us-east-1"}


def test_every_bookd_variable_the_deploy_files_set_is_a_declared_setting():
    from bookd.core.config import describe

    declared = {env for env, _, _ in describe()}
    deploy_files = ("deploy/k8s/deployment.yaml", "docker-compose.yml", "Dockerfile")
    for path in (ROOT / name for name in deploy_files):
        named = set(re.findall(r"\b((?:BOOKD|AWS)_[A-Z_]+)\s*[:=]", path.read_text()))
        named |= set(re.findall(r"name: ((?:BOOKD|AWS)_[A-Z_]+)", path.read_text()))
        assert named and named <= declared, f"{path.name}: {sorted(named - declared)}"
