"""Launch checks on real data sources: the run's config is the trainer's, validated before queuing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_the_demo_sources_build_a_valid_run_spec(project, demo_sources, make_run):
    from control.services.launch import run_launch_check, run_spec_write
    from trainer.config import load_run_spec

    run = make_run(project, sources=list(demo_sources.values()), total_steps=3)
    config, target = run_launch_check(run)
    assert target.name == "local"
    mixture = [item.data_source.name for item in run.run_sources.order_by("id")]
    assert [s.name for s in config.data.sources] == mixture
    spec = load_run_spec(run_spec_write(run, config))
    assert spec.run_id == str(run.pk)
    assert spec.config.total_steps == 3
    assert all(uri.startswith("file://") for s in spec.sources for uri in s.train)
    assert spec.config.tracking.http is not None and spec.config.tracking.http.run_id == str(run.pk)


def test_the_fixture_can_be_used_twice(project, demo_sources):
    assert len(demo_sources) == 8
    assert all(s.train_count > 0 and s.test_count > 0 for s in demo_sources.values())


def test_the_run_output_is_a_path_on_local_storage_and_a_uri_on_remote_storage(
    project, demo_sources, make_run, settings
):
    from control.services.launch import run_launch_check, run_output_dir, run_output_location

    run = make_run(project, sources=list(demo_sources.values()), total_steps=3)
    config, _ = run_launch_check(run)
    assert config.output_dir == run_output_dir(run) == run_output_location(run)
    assert config.output_dir.startswith("/") and config.output_dir.endswith(f"runs/{run.pk}/output")
    settings.STORAGE_URL = "s3://triune-storage/platform"
    # what the trainer is given: a URI every node of the cluster can open, not a bucket-relative path
    assert run_output_location(run) == f"s3://triune-storage/platform/runs/{run.pk}/output"
    settings.STORAGE_URL = "memory://triune-storage"
    assert run_output_location(run) == f"memory:///triune-storage/runs/{run.pk}/output"


def test_checkpoints_a_job_copies_to_s3_storage_are_the_platforms(
    project, demo_sources, make_run, settings, s3_endpoint, tmp_path, monkeypatch
):
    import fsspec

    from control.services.launch import run_output_location
    from control.services.run_outputs import latest_checkpoint_step, run_artifacts_sync
    from tests.s3_server import BUCKET, empty_bucket, s3_options
    from trainer.checkpoint import save_checkpoint
    from trainer.checkpoint.remote import remote_outputs

    options = s3_options(s3_endpoint)
    empty_bucket(options)
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    run = make_run(project, sources=list(demo_sources.values()), total_steps=3)
    settings.STORAGE_URL = f"s3://{BUCKET}/platform"
    # what the job's driver does with the output_dir it is given
    outputs = remote_outputs(run_output_location(run), None, {"TRIUNE_STAGING_DIR": str(tmp_path)})
    outputs.prepare(resume=False)
    assert latest_checkpoint_step(run) is None
    outputs.after_checkpoint(save_checkpoint(outputs.checkpoint_dir, 2, {"step": 2}))
    fsspec.filesystem("s3").invalidate_cache()
    assert latest_checkpoint_step(run) == 2  # a resumed attempt starts from it
    artifacts = run_artifacts_sync(run=run)
    assert any(a.step == 2 for a in artifacts)
