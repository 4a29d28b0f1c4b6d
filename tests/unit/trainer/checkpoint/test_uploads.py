"""Copies to remote storage on their own thread (the in-memory file system stands for remote storage)."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from trainer.checkpoint import MARKER, save_checkpoint
from trainer.checkpoint.remote import Mirror, RemoteOutputs, remote_outputs
from trainer.checkpoint.uploads import SNAPSHOTS, Snapshot, Uploads, link_tree


@pytest.fixture
def remote(tmp_path: Path) -> RemoteOutputs:
    uri = f"memory://runs-{uuid.uuid4().hex[:8]}/out"
    mirrors = remote_outputs(uri, None, {"TRIUNE_STAGING_DIR": str(tmp_path / "staging")})
    mirrors.outputs.local.mkdir(parents=True)
    return mirrors


def _save(remote: RemoteOutputs, step: int, keep_last: int | None = None):
    def write(folder: Path) -> None:
        (folder / "policy").mkdir()
        (folder / "policy" / "weights.bin").write_bytes(bytes([step]) * 1000)

    return save_checkpoint(
        remote.checkpoints.local, step, {"step": step}, write_files=write, keep_last=keep_last
    )


def _remote_steps(remote: RemoteOutputs) -> list[int]:
    return [step for step, _ in reversed(remote.checkpoints.remote_steps())]


class Log:
    def __init__(self) -> None:
        self.copied: list[int] = []
        self.failed: list[tuple[int, str]] = []
        self.dropped: list[tuple[int, int]] = []

    def uploads(self, remote: RemoteOutputs, *, start: bool = False) -> Uploads:
        return Uploads(
            remote,
            on_copied=lambda s: self.copied.append(s.step),
            on_failed=lambda s, exc: self.failed.append((s.step, str(exc))),
            on_dropped=lambda old, new: self.dropped.append((old.step, new.step)),
            start=start,
        )


def test_linked_files_outlive_the_checkpoint_they_were_linked_from(tmp_path: Path) -> None:
    source = tmp_path / "a"
    (source / "policy").mkdir(parents=True)
    (source / "policy" / "w.bin").write_bytes(b"w" * 100)
    (source / "state.pt").write_bytes(b"s")
    link_tree(source, tmp_path / "b")
    assert (tmp_path / "b" / "policy" / "w.bin").stat().st_ino == (source / "policy" / "w.bin").stat().st_ino
    for path in sorted(source.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    assert (tmp_path / "b" / "policy" / "w.bin").read_bytes() == b"w" * 100
    assert (tmp_path / "b" / "state.pt").read_bytes() == b"s"


def test_a_checkpoint_pruned_locally_before_its_copy_is_still_copied_whole(
    remote: RemoteOutputs, tmp_path: Path
) -> None:
    log = Log()
    uploads = log.uploads(remote)
    uploads.submit(_save(remote, 2, keep_last=1))
    _save(remote, 4, keep_last=1)  # keep_last 1 deletes step 2 here while its copy waits
    assert not (remote.checkpoints.local / "step_00000002").exists()
    assert uploads.copy_next().step == 2 and log.copied == [2]
    assert _remote_steps(remote) == [2]

    there = Mirror(tmp_path / "other-node", remote.checkpoints.uri)
    pulled = there.pull_latest()  # every file's hash checked after the copy
    assert pulled.step == 2 and (pulled.path / "policy" / "weights.bin").read_bytes() == bytes([2]) * 1000
    assert not any((remote.checkpoints.local / SNAPSHOTS).rglob("*.bin"))  # the snapshot is gone

    uploads.submit(_checkpoint(remote, 4))
    uploads.copy_next()
    assert _remote_steps(remote) == [4]  # step 2, pruned locally, is deleted remotely


def _checkpoint(remote: RemoteOutputs, step: int):
    from trainer.checkpoint import check_checkpoint

    return check_checkpoint(remote.checkpoints.local / f"step_{step:08d}")


def test_an_older_checkpoint_waiting_behind_a_newer_one_is_dropped(remote: RemoteOutputs) -> None:
    log = Log()
    uploads = log.uploads(remote)
    uploads.submit(_save(remote, 2))
    uploads.submit(_save(remote, 4))
    assert [s.step for s in uploads.pending] == [2, 4]
    assert uploads.copy_next().step == 4
    assert log.dropped == [(2, 4)] and log.copied == [4]
    assert _remote_steps(remote) == [4]
    assert uploads.copy_next() is None and uploads.pending == []
    assert not any((remote.checkpoints.local / SNAPSHOTS).rglob("*.bin"))


def test_a_metric_file_is_copied_as_it_was_at_the_checkpoint(remote: RemoteOutputs) -> None:
    metrics = remote.outputs.local / "metrics.jsonl"
    metrics.write_text('{"step":1}\n{"step":2}\n')
    log = Log()
    uploads = log.uploads(remote)
    uploads.submit(_save(remote, 2))
    with metrics.open("a") as handle:  # the next step's points, written while the copy waits
        handle.write('{"step":3}\n')
    uploads.copy_next()
    fs = remote.outputs.fs
    assert fs.cat_file(remote.outputs.remote("metrics.jsonl")) == b'{"step":1}\n{"step":2}\n'
    uploads.close()
    remote.push_outputs()  # what the run does at its end
    assert fs.cat_file(remote.outputs.remote("metrics.jsonl")).endswith(b'{"step":3}\n')


def test_a_failed_copy_is_reported_and_the_next_one_is_made(
    remote: RemoteOutputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log()
    uploads = log.uploads(remote)
    real_put = remote.checkpoints.fs.put_file
    calls = {"n": 0}

    def flaky(source: str, target: str, **kwargs) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise PermissionError("Access Denied")
        real_put(source, target, **kwargs)

    monkeypatch.setattr(remote.checkpoints.fs, "put_file", flaky)
    uploads.submit(_save(remote, 2))
    uploads.copy_next()
    assert log.failed == [(2, "Access Denied")] and log.copied == []
    fs = fsspec.filesystem("memory")
    assert not fs.exists(remote.checkpoints.remote("step_00000002", MARKER))  # never taken for complete
    uploads.submit(_save(remote, 4))
    uploads.copy_next()
    assert log.copied == [4] and 4 in _remote_steps(remote)


def test_the_thread_copies_everything_queued_before_close_returns(remote: RemoteOutputs) -> None:
    log = Log()
    uploads = log.uploads(remote, start=True)
    for step in (1, 2, 3):
        uploads.submit(_save(remote, step))
    uploads.close()
    assert log.copied[-1] == 3 and sorted(log.copied + [old for old, _ in log.dropped]) == [1, 2, 3]
    assert 3 in _remote_steps(remote) and uploads.pending == []
    assert not (remote.checkpoints.local / SNAPSHOTS).exists()
    with pytest.raises(RuntimeError, match="closed"):
        uploads.submit(_checkpoint(remote, 3))


def test_snapshots_left_by_a_killed_run_are_removed(remote: RemoteOutputs) -> None:
    left = remote.checkpoints.local / SNAPSHOTS / "abcd1234" / "step_00000002"
    left.mkdir(parents=True)
    (left / "weights.bin").write_bytes(b"x")
    Uploads(remote, start=False).close()
    assert not (remote.checkpoints.local / SNAPSHOTS).exists()


def test_outputs_alone_are_copied_when_checkpoints_stay_local(tmp_path: Path) -> None:
    uri = f"memory://runs-{uuid.uuid4().hex[:8]}/out"
    mirrors = remote_outputs(uri, str(tmp_path / "ckpt"), {"TRIUNE_STAGING_DIR": str(tmp_path / "s")})
    mirrors.outputs.local.mkdir(parents=True)
    (mirrors.outputs.local / "config.yaml").write_text("seed: 1\n")
    saved = save_checkpoint(tmp_path / "ckpt", 2, {"step": 2}, write_files=lambda folder: None)
    copied: list[Snapshot] = []
    uploads = Uploads(mirrors, on_copied=copied.append, start=False)
    uploads.submit(saved)
    uploads.close()
    assert copied[0].checkpoint is None
    assert mirrors.outputs.fs.cat_file(mirrors.outputs.remote("config.yaml")) == b"seed: 1\n"
