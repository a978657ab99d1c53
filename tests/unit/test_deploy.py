"""The container and cluster files: no engine runs here, so their promises are read and checked."""

from __future__ import annotations

import json
import os
import posixpath
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_files import (
    CONFIG_MAP,
    REPO,
    container_env,
    dockerfile_stages,
    manifests,
    only_container,
)
from upload_service.cli import command as cli
from upload_service.config import Settings


def test_dockerfile_is_multi_stage_non_root_and_execs_gunicorn() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    [user] = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    [cmd] = [line for line in final if line.upper().startswith("CMD ")]
    argv = json.loads(cmd[4:])  # Exec form is a JSON array: gunicorn is PID 1 and gets SIGTERM.
    assert argv[:3] == ["gunicorn", "-c", "gunicorn.conf.py"]
    assert argv[-1] == "upload_service.main:app"


def test_final_image_has_no_build_tools() -> None:
    final = " ".join(dockerfile_stages()[-1])
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "poetry"):
        assert tool not in final
    assert "--from=build" in final


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "tests", "var", "**/__pycache__"} <= ignored


@pytest.fixture
def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    # Set, so loading the file does not point this test process at a metrics folder.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return runpy.run_path(str(REPO / "gunicorn.conf.py"))


def test_gunicorn_conf_serves_with_uvicorn_workers_and_drains(
    gunicorn_conf: dict[str, Any],
) -> None:
    conf = gunicorn_conf
    assert conf["worker_class"] == "uvicorn_worker.UvicornWorker"
    assert conf["workers"] >= 2
    assert conf["bind"].endswith(":8000")
    assert 0 < conf["graceful_timeout"] <= conf["timeout"]
    assert conf["keepalive"] > 0
    assert conf["max_requests"] > 0
    assert 0 < conf["max_requests_jitter"] < conf["max_requests"]
    assert conf["preload_app"] is False
    assert conf["accesslog"] is None  # The app's structured access line instead.
    assert conf["logconfig_dict"]["root"]["handlers"]
    for hook in ("on_starting", "post_fork", "child_exit"):
        assert callable(conf[hook])


def test_web_concurrency_sets_the_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert runpy.run_path(str(REPO / "gunicorn.conf.py"))["workers"] == 3


def container(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    only = only_container(workload)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert only["resources"]["requests"]
    assert only["resources"]["limits"]
    assert {
        ref.get("configMapRef", ref.get("secretRef", {}))["name"] for ref in only["envFrom"]
    } == {
        "upload-service-config",
        "upload-service-secrets",
    }
    return dict(only)


def test_web_deployment_probes_and_drains_within_the_grace_period() -> None:
    objects = manifests()
    web = objects[("Deployment", "upload-service-web")]
    spec = web["spec"]["template"]["spec"]
    main = container(web)
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readiness"
    assert main["startupProbe"]["httpGet"]["path"] == "/health"
    pause = main["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    graceful = int(
        objects[("ConfigMap", "upload-service-config")]["data"]["GUNICORN_GRACEFUL_TIMEOUT"]
    )
    assert spec["terminationGracePeriodSeconds"] > int(pause[1]) + graceful
    assert "command" not in main  # The image's CMD: gunicorn.
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_worker_deployment_runs_the_job_worker() -> None:
    worker = manifests()[("Deployment", "upload-service-worker")]
    command = container(worker)["command"]
    assert command == ["upload-service", "worker"]
    assert cli._parser().parse_args(command[1:]).command == "worker"


def test_migration_job_service_and_configuration_examples() -> None:
    objects = manifests()
    job = objects[("Job", "upload-service-migrate")]
    assert container(job)["command"] == ["upload-service", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    service = objects[("Service", "upload-service")]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "web"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    known = {name.upper() for name in Settings.model_fields} | {
        "PROMETHEUS_MULTIPROC_DIR",
        "WEB_CONCURRENCY",
        "BIND",
    }
    config = objects[("ConfigMap", "upload-service-config")]["data"]
    secret = objects[("Secret", "upload-service-secrets")]["stringData"]
    for key in [*config, *secret]:
        assert key in known or key.startswith("GUNICORN_"), key
    # Credentials live in the Secret, never in the ConfigMap.
    assert "DATABASE_URL" in secret
    assert "NOTIFICATION_SECRET" in secret
    assert not {"DATABASE_URL", "JWT_SECRET", "NOTIFICATION_SECRET"} & set(config)


def test_env_example_lists_every_setting_with_a_comment() -> None:
    lines = (REPO / ".env.example").read_text().splitlines()
    listed = {line.split("=", 1)[0]: index for index, line in enumerate(lines) if "=" in line}
    listed = {name: index for name, index in listed.items() if not name.startswith("#")}
    for name in Settings.model_fields:
        assert name.upper() in listed, f"{name.upper()} missing from .env.example"
    # Each block of settings opens with a comment that says what it is for.
    for name, index in listed.items():
        block_start = index
        while (
            block_start > 0
            and "=" in lines[block_start - 1]
            and not lines[block_start - 1].startswith("#")
        ):
            block_start -= 1
        assert block_start > 0, name
        assert lines[block_start - 1].startswith("#"), name


def test_workers_cancel_what_remains_before_gunicorn_kills_them(
    gunicorn_conf: dict[str, Any],
) -> None:
    class Config:
        timeout_graceful_shutdown: int | None = None

    class Worker:
        config = Config()

    worker = Worker()
    gunicorn_conf["post_fork"](None, worker)
    grace = worker.config.timeout_graceful_shutdown
    assert grace is not None
    # uvicorn cancels leftovers first, so the lifespan shutdown runs inside gunicorn's limit.
    assert 0 < grace < gunicorn_conf["graceful_timeout"]


def test_metrics_files_go_to_a_writable_volume_in_every_pod_that_writes_them() -> None:
    objects = manifests()
    directory = objects[CONFIG_MAP]["data"]["PROMETHEUS_MULTIPROC_DIR"]
    for name in ("upload-service-web", "upload-service-worker"):
        workload = objects[("Deployment", name)]
        main = container(workload)
        # The root filesystem is read-only: the directory must be on one of the pod's volumes.
        assert main["securityContext"]["readOnlyRootFilesystem"] is True
        [volume] = [
            mount["name"]
            for mount in main["volumeMounts"]
            if posixpath.commonpath([mount["mountPath"], directory]) == mount["mountPath"]
        ]
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert "emptyDir" in volumes[volume], name


def test_prometheus_scrapes_the_worker_on_the_port_it_serves_metrics_on() -> None:
    objects = manifests()
    worker = objects[("Deployment", "upload-service-worker")]
    main = container(worker)
    bind = container_env(objects, main)["WORKER_METRICS_BIND"]
    host, port = bind.rsplit(":", 1)
    assert host == "0.0.0.0"  # Prometheus reaches the pod from outside it.
    assert {"name": "metrics", "containerPort": int(port)} in main["ports"]
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_gunicorn_workers_count_in_multiprocess_mode_when_no_directory_is_configured(
    tmp_path: Path,
) -> None:
    # The workers are forked from the master, so they inherit the mode of its prometheus-client.
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/db"}
    probe = (
        "import runpy; runpy.run_path('gunicorn.conf.py'); "
        "from prometheus_client import values; print(values.ValueClass._multiprocess)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.stdout.strip() == "True", done.stderr


def test_gunicorn_stops_with_one_line_when_the_metrics_directory_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(blocker / "metrics"))
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(REPO / "gunicorn.conf.py"))
    assert str(stopped.value) == (
        f"metrics directory error: PROMETHEUS_MULTIPROC_DIR={blocker}/metrics: "
        "cannot create it (Not a directory)"
    )
