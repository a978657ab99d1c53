"""The shipped deployment files read as data: the Dockerfile's stages and the Kubernetes objects,
and the environment a container of theirs starts with."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "deploy" / "kubernetes"
CONFIG_MAP = ("ConfigMap", "upload-service-config")
SECRET = ("Secret", "upload-service-secrets")

Objects = dict[tuple[str, str], dict[str, Any]]


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split into build stages."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def image_command() -> list[str]:
    """The final image's CMD (exec form)."""
    [cmd] = [line for line in dockerfile_stages()[-1] if line.upper().startswith("CMD ")]
    argv: list[str] = json.loads(cmd[4:])
    return argv


def image_env() -> dict[str, str]:
    """The final image's ENV, but PATH (the test's virtualenv stands in for /opt/venv)."""
    env: dict[str, str] = {}
    for line in dockerfile_stages()[-1]:
        if line.upper().startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, value = pair.split("=", 1)
                env[name] = value
    env.pop("PATH", None)
    return env


def manifests() -> Objects:
    """Every object in deploy/kubernetes, keyed by kind and name."""
    found: Objects = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "metadata" in document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    """The one container of a Deployment's or Job's pod."""
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return dict(only)


def container_env(objects: Objects, container: dict[str, Any]) -> dict[str, str]:
    """What the kubelet gives the container: the image's ENV, then `envFrom`, then `env`."""
    env = image_env()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(objects[("ConfigMap", source["configMapRef"]["name"])]["data"])
        else:
            env.update(objects[("Secret", source["secretRef"]["name"])]["stringData"])
    env.update({entry["name"]: entry["value"] for entry in container.get("env", [])})
    return env
