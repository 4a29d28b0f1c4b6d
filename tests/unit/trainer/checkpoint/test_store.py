"""Checkpoint directories: atomic save, keep-last-K, and never picking a partial or corrupt one."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

import trainer.checkpoint.store as store
from trainer.checkpoint import (
    MARKER,
    STATE_FILE,
    CheckpointError,
    atomic_directory,
    check_checkpoint,
    checkpoint_name,
    latest_complete,
    list_complete,
    load_state,
    prune,
    save_checkpoint,
)


def _state(step: int) -> dict:
    return {"step": step, "weights": torch.full((3,), float(step))}


def _save(root: Path, step: int, **kwargs) -> Path:
    return save_checkpoint(root, step, _state(step), meta={"note": f"s{step}"}, **kwargs).path


def _steps(root: Path) -> list[int]:
    return [c.step for c in list_complete(root)]


@pytest.mark.parametrize(
    ("step", "name"), [(0, "step_00000000"), (10, "step_00000010"), (10**9, "step_1000000000")]
)
def test_names_sort_like_steps(step: int, name: str) -> None:
    assert checkpoint_name(step) == name


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_a_bad_step_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^step must be an integer >= 0, got "):
        checkpoint_name(bad)  # type: ignore[arg-type]


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    path = _save(tmp_path, 5)
    found = latest_complete(tmp_path)
    assert found is not None and found.path == path and found.step == 5
    assert found.manifest["note"] == "s5" and set(found.manifest["files"]) == {STATE_FILE}
    state = load_state(found)
    assert state["step"] == 5 and torch.equal(state["weights"], torch.full((3,), 5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000005"]  # no temporary left


def test_latest_complete_of_nothing_is_none(tmp_path: Path) -> None:
    assert latest_complete(tmp_path) is None
    assert latest_complete(tmp_path / "missing") is None


@pytest.mark.parametrize(("keep", "left"), [(1, [4]), (2, [3, 4]), (3, [2, 3, 4]), (None, [1, 2, 3, 4])])
def test_keep_last_k(tmp_path: Path, keep: int | None, left: list[int]) -> None:
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep_last=keep)
    assert _steps(tmp_path) == left
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint_name(s) for s in left]


def test_a_save_after_resuming_from_an_older_step_drops_the_abandoned_future(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        _save(tmp_path, step, keep_last=5)
    _save(tmp_path, 3, keep_last=5)  # resumed from 2: 4 and 6 belong to another continuation
    assert _steps(tmp_path) == [2, 3]


def test_a_partial_checkpoint_is_never_picked(tmp_path: Path) -> None:
    _save(tmp_path, 2)
    newer = _save(tmp_path, 4)
    (newer / MARKER).unlink()  # as if killed before the marker was written
    skipped: list[str] = []
    found = latest_complete(tmp_path, skipped=skipped)
    assert found is not None and found.step == 2
    assert skipped == [f"{newer}: incomplete checkpoint (no COMPLETE marker: the save did not finish)"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("flip", "trainer_state.pt is corrupted (its SHA-256 differs from the manifest's)"),
        ("truncate", "trainer_state.pt has 10 bytes, the manifest says"),
        ("delete", "trainer_state.pt is missing"),
        ("manifest", "manifest.json does not match the COMPLETE marker (edited or corrupted)"),
        ("garbage", "unreadable manifest.json"),
    ],
)
def test_a_corrupt_checkpoint_is_never_picked(tmp_path: Path, damage: str, reason: str) -> None:
    _save(tmp_path, 2)
    newer = _save(tmp_path, 4)
    state_file, manifest = newer / STATE_FILE, newer / "manifest.json"
    if damage == "flip":
        data = bytearray(state_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        state_file.write_bytes(bytes(data))
    elif damage == "truncate":
        state_file.write_bytes(state_file.read_bytes()[:10])
    elif damage == "delete":
        state_file.unlink()
    elif damage == "manifest":
        manifest.write_text(manifest.read_text().replace('"s4"', '"s5"'))
    else:
        manifest.write_text("{not json")
    skipped: list[str] = []
    found = latest_complete(tmp_path, skipped=skipped)
    assert found is not None and found.step == 2
    assert len(skipped) == 1 and skipped[0].startswith(f"{newer}: ") and reason in skipped[0]
    with pytest.raises(CheckpointError, match="^" + str(newer)):
        check_checkpoint(newer)


def test_a_full_disk_during_save_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    previous = _save(tmp_path, 2)
    before = {p.name: p.read_bytes() for p in previous.iterdir()}
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)  # part of the bytes made it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left on device"):
        _save(tmp_path, 4, keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002"]  # no temporary, no step 4
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == before
    assert latest_complete(tmp_path).step == 2  # type: ignore[union-attr]


def test_a_failing_policy_writer_leaves_nothing(tmp_path: Path) -> None:
    def writer(path: Path) -> None:
        path.mkdir()
        (path / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 1, _state(1), write_policy=writer)
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_a_killed_save_are_removed_by_the_next(tmp_path: Path) -> None:
    leftover = tmp_path / ".tmp-step_00000004-deadbeef"
    leftover.mkdir()
    (leftover / STATE_FILE).write_bytes(b"partial")
    _save(tmp_path, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000005"]


def test_saving_a_step_again_replaces_it_whole(tmp_path: Path) -> None:
    _save(tmp_path, 3)
    save_checkpoint(tmp_path, 3, {"step": 3, "weights": torch.zeros(2)})
    found = latest_complete(tmp_path)
    assert found is not None and torch.equal(load_state(found)["weights"], torch.zeros(2))


def test_the_policy_directory_is_listed_and_checked(tmp_path: Path) -> None:
    def writer(path: Path) -> None:
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))

    checkpoint = save_checkpoint(tmp_path, 1, _state(1), write_policy=writer)
    assert checkpoint.policy_dir == checkpoint.path / "policy"
    assert set(checkpoint.manifest["files"]) == {STATE_FILE, "policy/config.json"}
    (checkpoint.path / "policy" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"policy/config.json has 2 bytes, the manifest says 26$"):
        check_checkpoint(checkpoint.path)


def test_a_state_file_that_is_not_a_dict_is_refused(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path, 1, _state(1))
    torch.save([1, 2], checkpoint.path / STATE_FILE)
    with pytest.raises(CheckpointError, match=r"trainer_state.pt does not hold a state dict$"):
        load_state(checkpoint)


def test_a_state_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path, 1, _state(1))
    torch.save({"x": Path("/")}, checkpoint.path / STATE_FILE)  # not a tensor/number/str: needs pickle
    with pytest.raises(CheckpointError, match=r"cannot read trainer_state.pt \(UnpicklingError"):
        load_state(checkpoint)


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_last_must_be_positive(tmp_path: Path, keep: int) -> None:
    with pytest.raises(ValueError, match=f"keep_last must be >= 1 or None, got {keep}"):
        save_checkpoint(tmp_path, 1, _state(1), keep_last=keep)
    with pytest.raises(ValueError, match=f"keep_last must be >= 1, got {keep}"):
        prune(tmp_path, keep)


def test_check_checkpoint_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not a checkpoint directory \(it does not exist\)$"):
        check_checkpoint(tmp_path / "nope")


def test_atomic_directory_replaces_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("boom")
    assert (final / "a").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_real_write_limit_during_save_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    """A real failing write, not a stand-in: the saving process may write no file larger than
    64 KiB (RLIMIT_FSIZE; the kernel answers EFBIG, as it answers ENOSPC on a full disk)."""
    import subprocess
    import sys
    import textwrap

    previous = _save(tmp_path, 2)
    before = {p.name: p.read_bytes() for p in previous.iterdir()}
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        import torch
        from trainer.checkpoint import save_checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        try:
            state = {{"step": 4, "weights": torch.zeros(1_000_000)}}
            save_checkpoint({str(tmp_path)!r}, 4, state, keep_last=1)
        except OSError as exc:
            print("refused:", exc.errno)
            sys.exit(0)
        sys.exit("the save went through")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"refused: {errno.EFBIG}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002"]  # no temporary, no step 4
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == before
    assert latest_complete(tmp_path).step == 2  # type: ignore[union-attr]
