"""The Kubernetes deployment under deploy/, checked without a cluster: the run launcher's config as
Dagster's chart renders it, against dagster-k8s's own config schema; the run Job built by dagster-k8s
from it; the instance config (PostgreSQL storage, concurrency pools) against Dagster's instance schema;
every pod template, volume and claim against the Kubernetes client's models (unknown keys refused);
the RayCluster's fields, and that the pieces agree (image, Ray version and address, volumes, the `gpu`
pool sized to the cluster's GPUs); the per-clip executor and lineage the pods' settings select."""

from __future__ import annotations

import re
import tomllib

import kubernetes.client as k8s
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type, validate_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

from conftest import REPO

DEPLOY = REPO / "deploy"
RELEASE = "sparkle"


def load(path):
    return list(yaml.safe_load_all((DEPLOY / path).read_text()))


def model(model_class, manifest: dict):
    """A Kubernetes model from a camelCase manifest; unknown keys anywhere in it raise."""
    return k8s_model_from_dict(model_class, k8s_snake_case_dict(model_class, manifest))


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def chart_run_launcher(values: dict) -> dict:
    """The K8sRunLauncher config the chart renders into dagster.yaml from `runLauncher` (its
    _run-launcher.tpl: camelCase values to snake_case keys, plus what the chart adds itself)."""
    given = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = {"load_incluster_config": given.get("loadInclusterConfig", True),
              "job_namespace": given.get("jobNamespace") or "dagster",
              "image_pull_policy": given.get("imagePullPolicy", "Always"),
              "service_account_name": f"{RELEASE}-dagster",
              "dagster_home": "/opt/dagster/dagster_home",
              "instance_config_map": f"{RELEASE}-dagster-instance",
              "postgres_password_secret": "dagster-postgresql-secret"}
    passthrough = ["kubeconfigFile", "envVars", "volumeMounts", "volumes", "labels", "resources", "schedulerName",
                   "securityContext", "failPodOnRunFailure"]
    config.update({snake(k): given[k] for k in passthrough if given.get(k)})
    for key in ("envConfigMaps", "envSecrets"):
        if given.get(key):
            config[snake(key)] = [e["name"] for e in given[key] if "name" in e]
    if given.get("runK8sConfig"):
        config["run_k8s_config"] = {snake(k): v for k, v in given["runK8sConfig"].items()}
    return config


@pytest.fixture(scope="module")
def values() -> dict:
    return load("helm/values.yaml")[0]


@pytest.fixture(scope="module")
def raycluster() -> dict:
    (cluster,) = load("k8s/raycluster.yaml")
    return cluster


def test_run_launcher_config_passes_dagster_k8s_schema_and_builds_the_run_job(values):
    schema = resolve_to_config_type(K8sRunLauncher.config_type())
    config = chart_run_launcher(values)
    result = process_config(schema, config)
    assert result.success, [e.message for e in result.errors]
    # the check can fail: a typo and a wrong type are reported
    typo = {**config, "job_namspace": "x"}
    assert 'Received unexpected config entry "job_namspace"' in process_config(schema, typo).errors[0].message
    assert not process_config(schema, {**config, "image_pull_policy": 3}).success

    run_config = UserDefinedDagsterK8sConfig.from_dict(config["run_k8s_config"])
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="registry.example.org/sparkle:0.1.0", dagster_home=config["dagster_home"],
                            instance_config_map=config["instance_config_map"],
                            postgres_password_secret=config["postgres_password_secret"]),
        ["dagster", "api", "execute_run", "{}"], "dagster-run-0123", user_defined_k8s_config=run_config)
    job = k8s.ApiClient().sanitize_for_serialization(job)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and pod["securityContext"]["fsGroup"] == 10001
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]  # a run pod sends clips to Ray
    with pytest.raises(Exception, match="resourcez"):
        UserDefinedDagsterK8sConfig.from_dict({"container_config": {"resourcez": {}}})


def test_instance_config_postgres_storage_and_pools(values):
    pg, pools = values["postgresql"], values["concurrency"]["pools"]
    instance = {
        "storage": {"postgres": {"postgres_db": {
            "username": pg["postgresqlUsername"], "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": f"{RELEASE}-postgresql", "db_name": pg["postgresqlDatabase"], "port": pg["service"]["port"],
            "scheme": pg["postgresqlScheme"]}}},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": chart_run_launcher(values)},
        "concurrency": {"pools": {"default_limit": pools["defaultLimit"], "granularity": pools["granularity"]},
                        "runs": {"max_concurrent_runs": values["concurrency"]["runs"]["maxConcurrentRuns"]}},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    result = validate_config(dagster_instance_config_schema(), instance)
    assert result.success, [e.message for e in result.errors]
    assert pg["postgresqlScheme"] == "postgresql+psycopg2" and "postgresqlPassword" not in pg  # set at install
    # the local PostgreSQL storage block has the same shape
    local = yaml.safe_load((DEPLOY / "dagster-postgres.yaml").read_text())
    assert validate_config(dagster_instance_config_schema(), local).success


def test_pods_volumes_and_claims_are_valid_kubernetes_objects(values, raycluster):
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for env in deployment["env"]:
        model(k8s.V1EnvVar, env)
    volumes = [model(k8s.V1Volume, v) for v in deployment["volumes"]]
    mounts = [model(k8s.V1VolumeMount, m) for m in deployment["volumeMounts"]]
    model(k8s.V1ResourceRequirements, deployment["resources"])
    model(k8s.V1PodSecurityContext, deployment["podSecurityContext"])
    claims = {c["metadata"]["name"]: model(k8s.V1PersistentVolumeClaim, c) for c in load("k8s/shared-store.yaml")}
    assert claims["sparkle-store"].spec.access_modes == ["ReadWriteMany"]
    assert {v.persistent_volume_claim.claim_name for v in volumes} == set(claims)
    assert {m.mount_path for m in mounts} == {"/sparkle", "/models"}
    with pytest.raises(Exception, match="claimNam|claim_nam"):
        model(k8s.V1Volume, {"name": "x", "persistentVolumeClaim": {"claimNam": "sparkle-store"}})

    # the RayCluster: its fields, and every pod template a valid PodTemplateSpec
    assert raycluster["apiVersion"] == "ray.io/v1" and raycluster["kind"] == "RayCluster"
    spec = raycluster["spec"]
    assert set(spec) <= {"rayVersion", "enableInTreeAutoscaling", "headGroupSpec", "workerGroupSpecs"}
    assert set(spec["headGroupSpec"]) <= {"serviceType", "rayStartParams", "template"}
    groups = spec["workerGroupSpecs"]
    for group in groups:
        assert set(group) <= {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"}
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # KubeRay wants strings
    for template in [spec["headGroupSpec"]["template"], *(g["template"] for g in groups)]:
        pod = model(k8s.V1PodTemplateSpec, template)
        assert {m.mount_path for c in pod.spec.containers for m in c.volume_mounts} == {"/sparkle", "/models"}
        assert {v.persistent_volume_claim.claim_name for v in pod.spec.volumes} == set(claims)


def test_the_pieces_agree(values, raycluster):
    """One image, one Ray (the pinned version), the address of the cluster's head service, the same
    code location module as pyproject, and the `gpu` pool sized to the cluster's GPUs."""
    from importlib.metadata import version  # not `import ray`: its local-cluster settings come later

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    spec = raycluster["spec"]
    templates = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    assert {c["image"] for t in templates for c in t["spec"]["containers"]} == {image}
    assert spec["rayVersion"] == version("ray")
    assert env["SPARKLE_RAY_ADDRESS"] == f"ray://{raycluster['metadata']['name']}-head-svc:10001"
    module = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    gpus = sum(g["maxReplicas"] * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
               for g in spec["workerGroupSpecs"] for c in g["template"]["spec"]["containers"])
    assert gpus > 0 and values["concurrency"]["pools"]["defaultLimit"] == gpus
    for group in spec["workerGroupSpecs"]:
        limit = group["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
        assert group["rayStartParams"].get("num-gpus") == limit  # Ray sees the GPUs the pod gets
    assert env["PGHOST"] == f"{RELEASE}-postgresql"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "scripts/setup.sh /opt/venv" in dockerfile and re.search(r"^FROM python:3\.11", dockerfile, re.M)
    assert "/sparkle" in dockerfile and env["SPARKLE_HOME"] == "/sparkle"


def test_the_pods_settings_select_ray_with_gpus_and_the_ducklake_lineage(values, monkeypatch, tmp_path):
    from sparkle_assets.core.lineage import open_lineage
    from sparkle_assets.core.lineage_lake import LakeLineage
    from sparkle_assets.core.ray_executor import RayExecutor
    from sparkle_assets.core.resources import default_resources

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for e in deployment["env"]:
        monkeypatch.setenv(e["name"], e.get("value") or "from-a-secret")
    monkeypatch.setenv("SPARKLE_HOME", str(tmp_path))  # /sparkle is the volume's path in the pods
    executor = default_resources()["clip_executor"].executor()
    assert isinstance(executor, RayExecutor) and executor.address == "ray://sparkle-ray-head-svc:10001"
    assert (executor.request.cpus, executor.request.gpus, executor.request.actors) == (1.0, 0.0, False)
    model_stage = executor.for_pool("gpu")
    assert (model_stage.request.gpus, model_stage.request.actors) == (1.0, True)
    lineage = open_lineage(tmp_path)
    assert isinstance(lineage, LakeLineage) and "password" not in lineage.catalog
    assert lineage.catalog == "host=sparkle-postgresql port=5432 user=sparkle dbname=sparkle"
