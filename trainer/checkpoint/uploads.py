"""Copying checkpoints to remote storage on a thread of their own, so that training does not wait.

A checkpoint of a 7B model is tens of GB; copied on the training thread, it would hold the next
step for as long as the upload takes. Here the training thread only takes a snapshot of what is
to be copied, which costs no copy of the data:

- the checkpoint's files are hard-linked into ``.uploading/`` next to the checkpoints (a
  checkpoint's files are never written again once it is complete, and a link keeps them when
  ``keep_last`` deletes the checkpoint before its copy is done);
- the other outputs are stamped with their size: an append-only metric file is copied up to the
  lines it held then, never a line written during the copy.

One thread copies the snapshots in order. When a newer checkpoint is waiting, an older one not
yet started is dropped (its copy would be pruned by ``keep_last`` soon or be stale), so a slow
store holds at most two snapshots on local disk. A failed copy is reported and the next
checkpoint is tried; :meth:`Uploads.close` waits for what is queued.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.checkpoint.remote import FileStamp, RemoteOutputs
from trainer.checkpoint.store import Checkpoint

SNAPSHOTS = ".uploading"


def link_tree(source: Path, target: Path) -> None:
    """Recreate ``source`` at ``target`` with every file hard-linked (copied where links fail)."""
    for current, _dirs, files in os.walk(source):
        here = Path(current)
        there = target / here.relative_to(source)
        there.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(here / name, there / name)
            except OSError:  # a file system without hard links
                shutil.copy2(here / name, there / name)


@dataclass(frozen=True)
class Snapshot:
    """What one checkpoint's copy sends: the checkpoint (its linked copy) and the outputs' stamps."""

    step: int
    checkpoint: Checkpoint | None
    outputs: list[FileStamp]


class Uploads:
    """The queue of copies to remote storage and the thread that makes them."""

    def __init__(
        self,
        remote: RemoteOutputs,
        *,
        on_copied: Callable[[Snapshot], None] = lambda snapshot: None,
        on_failed: Callable[[Snapshot, BaseException], None] = lambda snapshot, exc: None,
        on_dropped: Callable[[Snapshot, Snapshot], None] = lambda dropped, newer: None,
        start: bool = True,
    ) -> None:
        self.remote = remote
        self.on_copied = on_copied
        self.on_failed = on_failed
        self.on_dropped = on_dropped
        self._queue: list[Snapshot] = []
        self._busy: Snapshot | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.snapshots = remote.checkpoints.local / SNAPSHOTS if remote.checkpoints is not None else None
        if self.snapshots is not None:
            shutil.rmtree(self.snapshots, ignore_errors=True)  # left by a run that was killed
        if start:
            self._thread = threading.Thread(target=self._work, name="checkpoint-uploads", daemon=True)
            self._thread.start()

    def submit(self, checkpoint: Checkpoint) -> Snapshot:
        """Queue the copy of ``checkpoint`` (just saved) and of the outputs as they are now."""
        linked = None
        if self.snapshots is not None:
            folder = self.snapshots / uuid.uuid4().hex[:8] / checkpoint.path.name
            link_tree(checkpoint.path, folder)
            linked = Checkpoint(folder, checkpoint.step, checkpoint.manifest)
        snapshot = Snapshot(checkpoint.step, linked, self.remote.output_stamps())
        with self._changed:
            if self._closed:
                raise RuntimeError("the uploads are closed")
            self._queue.append(snapshot)
            self._changed.notify_all()
        return snapshot

    @property
    def pending(self) -> list[Snapshot]:
        """The snapshots queued or being copied, oldest first."""
        with self._changed:
            return ([self._busy] if self._busy is not None else []) + list(self._queue)

    def copy_next(self) -> Snapshot | None:
        """Copy the newest queued snapshot, dropping the older ones; None when the queue is empty."""
        with self._changed:
            if not self._queue:
                return None
            *older, snapshot = self._queue
            self._queue.clear()
            self._busy = snapshot
        for dropped in older:
            self._discard(dropped)
            self.on_dropped(dropped, snapshot)
        try:
            if snapshot.checkpoint is not None:
                self.remote.after_checkpoint(snapshot.checkpoint, snapshot.outputs)
            else:
                self.remote.push_outputs(snapshot.outputs)
        except Exception as exc:  # noqa: BLE001 - any store error: reported, and the run goes on
            self.on_failed(snapshot, exc)
        else:
            self.on_copied(snapshot)
        finally:
            self._discard(snapshot)
            with self._changed:
                self._busy = None
                self._changed.notify_all()
        return snapshot

    def _discard(self, snapshot: Snapshot) -> None:
        if snapshot.checkpoint is not None:
            shutil.rmtree(snapshot.checkpoint.path.parent, ignore_errors=True)

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if not self._queue and self._closed:
                    return
            self.copy_next()

    def close(self) -> None:
        """Wait until every queued copy is made (or has failed), then stop the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
        else:
            while self.copy_next() is not None:
                pass
        if self.snapshots is not None:
            shutil.rmtree(self.snapshots, ignore_errors=True)
