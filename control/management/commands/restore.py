"""Restore a backup made by ``backup`` into the configured database and storage folder."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from control.services.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup directory (from `backup --out`) into the configured database and storage folder. "
        "Both must be empty unless --force; a backup from a newer Triune is refused."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path, help="the backup directory")
        parser.add_argument(
            "--force", action="store_true", help="replace a database and storage folder that are not empty"
        )

    def handle(self, *args, path: Path, force: bool, **options) -> None:
        try:
            outcome = backup_restore(path=path, force=force)
        except BackupError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"restored the backup of {outcome.manifest['created_at']} from {path} in {outcome.seconds:.1f} s"
        )
        if outcome.pending:
            self.stdout.write(
                f"{len(outcome.pending)} migrations are newer than the backup; apply them with "
                "`./triune manage migrate` (./triune up applies them when it starts)"
            )
