"""Back up the whole platform: its database (pg_dump) and storage folder, with a manifest."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from control.services.backup import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Write a backup of the platform (every project, dataset, run, metric and alert, plus the storage "
        "folder) to a new directory: manifest.json, database.dump (pg_dump custom format), storage.tar."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="the backup directory to create")

    def handle(self, *args, out: Path, **options) -> None:
        try:
            outcome = backup_create(out=out)
        except BackupError as exc:
            raise CommandError(exc.message) from exc
        database, storage = outcome.manifest["database"], outcome.manifest["storage"]
        self.stdout.write(
            f"backup written to {outcome.path} in {outcome.seconds:.1f} s: "
            f"database {database['size']} bytes, storage {storage['files']} files ({storage['size']} bytes)"
        )
