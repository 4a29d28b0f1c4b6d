"""Dataset uploads with ``STORAGE_URL`` on S3 (an S3-compatible server on this machine): received and
ingested locally, the finished version copied to the bucket, read back from there."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from control.models import DatasetVersion, DataSource
from tests.s3_server import BUCKET, empty_bucket, s3_options
from trainer.data.synth import generate_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def s3_storage(s3_endpoint, settings, tmp_path, monkeypatch):
    options = s3_options(s3_endpoint)
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    settings.STORAGE_URL = f"s3://{BUCKET}/platform"
    settings.TRIUNE_INGEST_DIR = tmp_path / "ingest"
    return empty_bucket(options)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(str(out), per_source=6, image_size=56, test_fraction=0.34)
    return out


def _post(client, project, paths, name="orsta"):
    handles = [open(p, "rb") for p in paths]
    try:
        return client.post("/api/v1/datasets/", {"project": project.pk, "name": name, "files": handles})
    finally:
        for handle in handles:
            handle.close()


def test_an_upload_is_committed_to_the_bucket_and_read_back_from_it(
    client_for, user, project, corpus, s3_storage, tmp_path, make_run
) -> None:
    client = client_for(user)
    response = _post(client, project, sorted(corpus.glob("*.parquet")))
    assert response.status_code == 201, response.json()
    version = DatasetVersion.objects.get(pk=response.json()["version"]["id"])
    assert version.storage_uri.startswith(f"s3://{BUCKET}/platform/datasets/{project.pk}/")
    s3_storage.invalidate_cache()
    math = DataSource.objects.get(project=project, name="synth_math")
    for uri in math.files["train"] + math.files["test"]:
        assert uri.startswith(version.storage_uri + "/") and s3_storage.exists(uri)
    assert not list((tmp_path / "ingest" / "staging").rglob("*.parquet"))  # nothing left locally

    page = client.get(f"/api/v1/data-sources/{math.pk}/samples/?split=train&offset=2&limit=2")
    assert page.status_code == 200, page.json()
    assert [row["index"] for row in page.json()["results"]] == [2, 3]
    image = client.get(f"/api/v1/data-sources/{math.pk}/samples/train/0/images/0/")
    assert image.status_code == 200 and image["Content-Type"].startswith("image/")

    # a run launched on these sources: its spec gives the trainer the bucket's URIs, checked readable
    from control.services.launch import run_launch_check, run_spec_write
    from trainer.config import load_run_spec

    run = make_run(project, sources=[math], total_steps=2)
    config, _ = run_launch_check(run)
    spec = load_run_spec(run_spec_write(run, config))
    assert spec.sources[0].train == math.files["train"]
    assert spec.config.output_dir == f"s3://{BUCKET}/platform/runs/{run.pk}/output"


def test_a_failed_copy_to_the_bucket_leaves_nothing(
    client_for, user, project, corpus, s3_storage, tmp_path, monkeypatch
) -> None:
    from control.storage import storage

    fs, _ = storage()  # the instance the platform copies with
    real_put = fs.put_file
    copied: list[str] = []

    def cut(source, target, **kwargs):
        if len(copied) == 3:
            raise ConnectionResetError("connection reset by peer")
        real_put(source, target, **kwargs)
        copied.append(target)

    monkeypatch.setattr(fs, "put_file", cut)
    response = _post(client_for(user), project, sorted(corpus.glob("*.parquet")))
    assert response.status_code == 400, response.json()
    assert "could not be written to storage" in response.json()["message"]
    assert not DatasetVersion.objects.filter(dataset__project=project).exists()
    assert not DataSource.objects.filter(project=project).exists()
    s3_storage.invalidate_cache()
    assert copied and not any(s3_storage.exists(uri) for uri in copied)  # what was copied is deleted
    assert not list((tmp_path / "ingest").rglob("*.parquet"))


def test_artifacts_on_the_bucket_download_as_files_and_archives(
    client_for, user, project, s3_storage, make_run
) -> None:
    import io
    import tarfile

    from control.models import RunArtifact

    run = make_run(project, total_steps=2)
    folder = f"{BUCKET}/platform/runs/{run.pk}/output/checkpoints/step_00000002"
    s3_storage.pipe_file(f"{folder}/manifest.json", b'{"step": 2}')
    s3_storage.pipe_file(f"{folder}/policy/model.safetensors", b"w" * 5000)
    spec = RunArtifact.objects.create(run=run, kind="spec", uri=f"s3://{folder}/manifest.json")
    checkpoint = RunArtifact.objects.create(run=run, kind="checkpoint", step=2, uri=f"s3://{folder}")
    gone = RunArtifact.objects.create(run=run, kind="checkpoint", step=4, uri=f"s3://{folder}-gone")
    client = client_for(user)

    got = client.get(f"/api/v1/runs/{run.pk}/artifacts/{spec.pk}/download/")
    assert got.status_code == 200 and b"".join(got.streaming_content) == b'{"step": 2}'
    got = client.get(f"/api/v1/runs/{run.pk}/artifacts/{checkpoint.pk}/download/")
    assert got.status_code == 200 and got["Content-Type"] == "application/gzip"
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(got.streaming_content)), mode="r:gz")
    members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    assert members == {
        f"run-{run.pk}-checkpoint-step-2/manifest.json": b'{"step": 2}',
        f"run-{run.pk}-checkpoint-step-2/policy/model.safetensors": b"w" * 5000,
    }
    missing = client.get(f"/api/v1/runs/{run.pk}/artifacts/{gone.pk}/download/")
    assert missing.status_code == 404 and "no longer in storage" in missing.json()["message"]
