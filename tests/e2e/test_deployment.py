"""The shipped deployment files start: each workload's command, run as a real process with the
environment its pod gets (the image's ENV, the ConfigMap, the Secret, the container's own `env`).

Only what points outside the pod is redirected to this machine's test services: the database,
S3 (moto, plus its endpoint), the classifier, the JWKS, Redis, the webhook receiver and the
addresses the processes listen on. Everything else is as shipped, PROMETHEUS_MULTIPROC_DIR
included: it lies on the pod's `emptyDir` volume mounted at /tmp, so each pod gets a fresh empty
directory of its own for that volume, as the kubelet gives it, and paths under the mount point
lead there (the host's real /tmp is shared by every test run on this machine). Nothing of the
test runner's own environment reaches the processes but moto's dummy AWS credentials.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.deploy_files import (
    CONFIG_MAP,
    REPO,
    Objects,
    container_env,
    image_command,
    manifests,
    only_container,
)
from tests.e2e.scrape import Samples, scraped
from tests.fixtures.app import free_port, terminate
from tests.fixtures.jwks import JwksServer, Keys, claims
from tests.integration.jobs.support import WebhookReceiver, wait_for
from tests.samples import TEXTS, pdf_bytes

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.e2e

CLASSIFY_SUCCEEDED = frozenset({"kind": "classify", "outcome": "succeeded"}.items())
START_TIMEOUT_S = 60.0


class Container:
    """A workload's command run from the image's working directory, ended by its own pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}-{time.monotonic_ns()}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, as the kubelet sends it; SIGKILL if it will not go."""
        return terminate(self.process, timeout_s)


class Pod:
    """One workload of deploy/kubernetes: its command and environment, its volumes as folders.

    A shipped path on one of the pod's volumes leads to that volume's folder; any other absolute
    path of a read-only root filesystem leads under a plain file, where nothing can be created.
    """

    def __init__(
        self, objects: Objects, kind: str, name: str, workdir: Path, local: dict[str, str]
    ) -> None:
        self.container = only_container(objects[(kind, name)])
        self.workdir = workdir
        workdir.mkdir(parents=True)
        roots = {}
        for mount in self.container.get("volumeMounts", []):
            volume = workdir / mount["name"]  # emptyDir: empty when the pod starts
            volume.mkdir()
            roots[mount["mountPath"].rstrip("/")] = volume
        if self.container["securityContext"]["readOnlyRootFilesystem"]:
            read_only = workdir / "read-only-root"
            read_only.write_text("")
            roots.setdefault("", read_only)
        env = container_env(objects, self.container)
        for variable, value in env.items():
            for point, folder in sorted(roots.items(), reverse=True):  # The deepest mount first.
                if value.startswith("/") and (value == point or value.startswith(f"{point}/")):
                    env[variable] = f"{folder}{value[len(point) :]}"
                    break
        env.update(local)
        # The image's PATH leads to its virtualenv: here, the test's.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
        self.env = env
        self.argv = list(self.container.get("command") or image_command())
        self.argv += self.container.get("args", [])

    def start(self) -> Container:
        return Container(self.container["name"], self.argv, self.env, self.workdir)

    def run(self, timeout_s: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s
        )


@pytest.fixture
def shipped_bucket(s3_client: S3Client) -> Iterator[str]:
    """The ConfigMap's bucket, in its region, on the moto server; emptied and removed after."""
    data = manifests()[CONFIG_MAP]["data"]
    bucket, region = data["S3_BUCKET"], data["S3_REGION"]
    s3_client.create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
    )
    yield bucket
    for item in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3_client.delete_object(Bucket=bucket, Key=item["Key"])
    s3_client.delete_bucket(Bucket=bucket)


@pytest.fixture
def jwks(keys: Keys) -> Iterator[JwksServer]:
    """The JWKS the ConfigMap's JWT_JWKS_URL stands for."""
    server = JwksServer([keys.rsa.jwk])
    yield server
    server.stop()


@pytest.fixture
def local_endpoints(
    pg_url: str,
    pg_clean: object,
    moto_server: str,
    shipped_bucket: str,
    classifier_server: str,
    jwks: JwksServer,
    redis_url: str,
    redis_prefix: str,
    receiver: WebhookReceiver,
) -> dict[str, str]:
    """The variables that lead out of the pod, pointed at this machine's test services."""
    env = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    return {
        **env,  # moto's dummy credentials: in a cluster they come from the pod's identity
        "NO_PROXY": "127.0.0.1,localhost",
        "DATABASE_URL": pg_url,
        "S3_ENDPOINT_URL": moto_server,
        "CLASSIFIER_TARGET": classifier_server,
        "JWT_JWKS_URL": jwks.url,
        "RATE_LIMIT_STORAGE_URL": redis_url,
        "RATE_LIMIT_KEY_PREFIX": redis_prefix,
        "NOTIFICATION_URL": receiver.url,
    }


async def answers(url: str) -> int | None:
    """The status `url` answers with, or None while nothing listens there."""
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            return (await client.get(url)).status_code
        except httpx.HTTPError:
            return None


async def wait_until_serving(container: Container, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while await answers(url) != 200:
        assert container.process.poll() is None, f"{container.name} exited:\n{container.output()}"
        assert time.monotonic() < deadline, f"{url} never answered:\n{container.output()}"
        await asyncio.sleep(0.2)


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    return scraped(response.text)


async def upload_and_wait_until_classified(web: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=web, headers=headers, timeout=30) as client:
        content = pdf_bytes(TEXTS["invoice"][0])
        response = await client.post("/v1/documents", files={"file": ("a.pdf", content)})
        assert response.status_code == 202, response.text
        doc_id = response.json()["doc_id"]

        async def document() -> dict[str, Any]:
            body: dict[str, Any] = (await client.get(f"/v1/documents/{doc_id}")).json()
            return body

        return await wait_for(
            document, lambda body: body["status"] in ("complete", "failed"), timeout_s=60
        )


async def test_each_shipped_workload_starts_with_the_configmap_environment_and_serves(
    local_endpoints: dict[str, str],
    keys: Keys,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    objects = manifests()
    config = objects[CONFIG_MAP]["data"]
    web_port, worker_metrics_port = free_port(), free_port()
    migrate = Pod(objects, "Job", "upload-service-migrate", tmp_path / "migrate", local_endpoints)
    web = Pod(
        objects,
        "Deployment",
        "upload-service-web",
        tmp_path / "web",
        {**local_endpoints, "BIND": f"127.0.0.1:{web_port}"},
    )
    worker = Pod(
        objects,
        "Deployment",
        "upload-service-worker",
        tmp_path / "worker",
        {**local_endpoints, "WORKER_METRICS_BIND": f"127.0.0.1:{worker_metrics_port}"},
    )
    # As shipped: a metrics directory that does not exist yet, on the pod's empty volume.
    worker_metrics_dir = Path(worker.env["PROMETHEUS_MULTIPROC_DIR"])
    assert worker_metrics_dir.relative_to(tmp_path / "worker" / "tmp")
    assert not worker_metrics_dir.exists()

    # The job has no volume, so its metrics directory could not be made: it needs none.
    migrated = migrate.run()
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    web_url = f"http://127.0.0.1:{web_port}"
    worker_metrics = f"http://127.0.0.1:{worker_metrics_port}"
    containers = [web.start(), worker.start()]
    try:
        await wait_until_serving(containers[0], f"{web_url}/readiness")
        await wait_until_serving(containers[1], f"{worker_metrics}/metrics")
        web_metrics = await scrape(f"{web_url}/metrics")
        assert any(name == "http_requests_total" for name, _labels in web_metrics)
        assert Path(web.env["PROMETHEUS_MULTIPROC_DIR"]).is_dir()  # gunicorn's master made it

        token = keys.rsa.sign(claims(aud=config["JWT_AUDIENCE"], iss=config["JWT_ISSUER"]))
        document = await upload_and_wait_until_classified(web_url, token)
        assert document["status"] == "complete", document
        assert document["classification"]["label"] == "invoice"

        async def worker_samples() -> Samples:
            return await scrape(f"{worker_metrics}/metrics")

        counted = await wait_for(
            worker_samples, lambda s: s.get(("jobs_total", CLASSIFY_SUCCEEDED)) == 1, timeout_s=10
        )
        assert counted[("jobs_total", CLASSIFY_SUCCEEDED)] == 1

        async def notified() -> int:
            return len(receiver.requests)

        await wait_for(notified, lambda count: count >= 1, timeout_s=30)

        # The container restarts (its emptyDir stays): the new process's scrape adds its own
        # count to the one the previous process left.
        assert containers[1].stop() == 0, containers[1].output()
        containers[1] = worker.start()
        await wait_until_serving(containers[1], f"{worker_metrics}/metrics")
        document = await upload_and_wait_until_classified(web_url, token)
        assert document["status"] == "complete", document
        await wait_for(
            worker_samples, lambda s: s.get(("jobs_total", CLASSIFY_SUCCEEDED)) == 2, timeout_s=10
        )
        assert len(list(worker_metrics_dir.glob("counter_*.db"))) == 2  # one per process
    finally:
        codes = {container.name: container.stop() for container in containers}
    assert codes == {"web": 0, "worker": 0}, [c.output() for c in containers]
