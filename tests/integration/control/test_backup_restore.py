"""Backup and restore of a populated platform against the real PostgreSQL: a project with a dataset
(real parquet files in storage), a run with metric points and an alert, backed up, restored into a
fresh database and storage folder, and compared row by row and file by file. Bad backups are refused
with a message and leave the target as it was."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.core.management import CommandError, call_command

from control.services.backup import (
    DATABASE_PART,
    MANIFEST,
    STORAGE_PART,
    BackupError,
    backup_create,
    backup_restore,
    database_params,
)

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]


def _connect(db: dict) -> psycopg.Connection:
    return psycopg.connect(
        dbname=db["NAME"],
        host=db["HOST"] or None,
        port=str(db["PORT"] or 5432),
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        autocommit=True,
    )


def _tables(db: dict) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order."""
    with _connect(db) as conn:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
        return {name: conn.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall() for name in names}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def fresh_db():
    """An empty database on the same server, dropped afterwards."""
    db = database_params()
    target = {**db, "NAME": f"triune_restore_{uuid.uuid4().hex[:12]}"}
    with _connect({**db, "NAME": "postgres"}) as conn:
        conn.execute(f'CREATE DATABASE "{target["NAME"]}"')
    yield target
    with _connect({**db, "NAME": "postgres"}) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target["NAME"]}" WITH (FORCE)')


@pytest.fixture
def populated(project, demo_sources, make_run, make_rule, ingest, storage_root):
    """A project with the synthetic dataset, a run over two of its sources with points, and an alert."""
    from control.models import Alert

    run = make_run(project, sources=[demo_sources["synth_math"], demo_sources["synth_detection"]])
    make_rule(project, name="accuracy collapse")
    # steps 0..4 of two sources: accuracy 0.9, 0.8, ... 0.5 on math, 0.3 flat on detection (< 0.5: fires).
    ingest(
        run,
        *[(s, "reward/accuracy", "synth_math", 0.9 - 0.1 * s) for s in range(5)],
        *[(s, "reward/accuracy", "synth_detection", 0.3) for s in range(5)],
        *[(s, "actor/pg_loss", "", 0.01 * s) for s in range(5)],
    )
    assert Alert.objects.filter(run=run, source="synth_detection").exists()
    return run


@pytest.fixture
def backup(populated, tmp_path) -> Path:
    return backup_create(out=tmp_path / "backup").path


def _use_storage(settings, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    settings.STORAGE_URL = root.as_uri()
    return root


def test_backup_holds_a_manifest_a_dump_and_the_storage_folder(backup, storage_root):
    manifest = json.loads((backup / MANIFEST).read_text())
    assert sorted(p.name for p in backup.iterdir()) == [DATABASE_PART, MANIFEST, STORAGE_PART]
    assert (manifest["format"], manifest["format_version"], manifest["scope"]) == (
        "triune-backup",
        1,
        "platform",
    )
    assert manifest["migrations"]["control"][-1] == "0004_alerting"
    assert "auth" in manifest["migrations"]
    for part in (manifest["database"], manifest["storage"]):
        data = (backup / part["file"]).read_bytes()
        assert part["size"] == len(data)
        assert part["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["storage"]["root"] == storage_root.as_uri()
    assert manifest["storage"]["files"] == len(_hashes(storage_root)) > 0
    assert not [p for p in backup.parent.iterdir() if p.name.startswith(".backup.partial-")]


def test_restore_into_a_fresh_database_gives_every_row_and_file_back(
    backup, populated, storage_root, fresh_db, settings, tmp_path
):
    before, files_before = _tables(database_params()), _hashes(storage_root)
    new_root = _use_storage(settings, tmp_path / "elsewhere" / "storage")
    # The command line, as ./triune manage runs it, against the fresh database and storage folder.
    db = fresh_db
    env = {
        **os.environ,
        "TRIUNE_TESTING": "1",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{quote(db['HOST'], safe='')}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "STORAGE_URL": new_root.as_uri(),
    }
    if db["PASSWORD"]:
        env["DATABASE_URL"] = env["DATABASE_URL"].replace(f"{db['USER']}@", f"{db['USER']}:{db['PASSWORD']}@")
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "restore", str(backup)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "restored the backup of" in result.stdout

    after = _tables(fresh_db)
    assert {t: len(rows) for t, rows in after.items()} == {t: len(rows) for t, rows in before.items()}
    # Every value is the same, except storage URIs, which now point into the new storage folder.
    old_uri, new_uri = storage_root.as_uri(), new_root.as_uri()
    for table, rows in before.items():
        assert repr(after[table]) == repr(rows).replace(old_uri + "/", new_uri + "/"), table
    assert _hashes(new_root) == files_before

    with _connect(fresh_db) as conn:
        points = conn.execute(
            "SELECT step, value FROM control_metricpoint WHERE run_id = %s AND source = 'synth_math' "
            "AND key = 'reward/accuracy' ORDER BY step",
            [populated.pk],
        ).fetchall()
        alert = conn.execute(
            "SELECT source, key, state, step, value FROM control_alert WHERE run_id = %s", [populated.pk]
        ).fetchone()
        files = conn.execute("SELECT files FROM control_datasource WHERE name = 'synth_math'").fetchone()[0]
    assert points == [(s, pytest.approx(0.9 - 0.1 * s)) for s in range(5)]
    # The first detection point (0.3 < 0.5, window 1) fired the rule.
    assert alert == ("synth_detection", "reward/accuracy", "firing", 0, pytest.approx(0.3))
    for uri in files["train"] + files["test"]:
        assert uri.startswith(new_uri + "/") and Path(uri.removeprefix("file://")).is_file()


def test_a_second_restore_needs_force_and_then_replaces_the_contents(
    backup, storage_root, fresh_db, settings, tmp_path
):
    before = _tables(database_params())
    new_root = _use_storage(settings, tmp_path / "second" / "storage")
    backup_restore(path=backup, db=fresh_db)
    with _connect(fresh_db) as conn:
        conn.execute("DELETE FROM control_metricpoint")
    (new_root / "stray.txt").write_text("not from the backup")

    with pytest.raises(BackupError, match=r"^database 'triune_restore_\w+' is not empty \(\d+ tables: "):
        backup_restore(path=backup, db=fresh_db)
    backup_restore(path=backup, db=fresh_db, force=True)
    assert {t: len(r) for t, r in _tables(fresh_db).items()} == {t: len(r) for t, r in before.items()}
    assert _hashes(new_root) == _hashes(storage_root)
    assert sorted(p.name for p in new_root.parent.iterdir()) == ["storage"]


def test_the_command_refuses_to_restore_over_the_running_database(backup):
    with pytest.raises(
        CommandError, match=r"is not empty \(\d+ tables: .*pass --force to replace its contents"
    ):
        call_command("restore", str(backup))


def test_the_command_refuses_to_overwrite_a_backup(backup):
    with pytest.raises(CommandError, match=r"exists already; name a new directory for the backup$"):
        call_command("backup", "--out", str(backup))


def _broken_copy(backup: Path, tmp_path: Path, name: str) -> Path:
    import shutil

    copy = tmp_path / name
    shutil.copytree(backup, copy)
    return copy


def _edit_manifest(path: Path, **changes) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.update(changes)
    (path / MANIFEST).write_text(json.dumps(manifest))


def _missing_part(path: Path) -> str:
    (path / STORAGE_PART).unlink()
    return rf"{re.escape(str(path / STORAGE_PART))} is missing; the backup is incomplete"


def _missing_manifest(path: Path) -> str:
    (path / MANIFEST).unlink()
    return rf"{re.escape(str(path / MANIFEST))} is missing; {re.escape(str(path))} is not a Triune backup"


def _corrupt_manifest(path: Path) -> str:
    text = (path / MANIFEST).read_text()
    (path / MANIFEST).write_text(text[: len(text) // 2])
    return rf"{re.escape(str(path / MANIFEST))} is not valid JSON \(.*\); the backup is damaged"


def _truncated_dump(path: Path) -> str:
    dump = path / DATABASE_PART
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])
    cut = len(data) // 2
    return rf"{re.escape(str(dump))} is {cut} bytes, the manifest says {len(data)}; the backup is incomplete"


def _flipped_byte(path: Path) -> str:
    dump = path / DATABASE_PART
    data = bytearray(dump.read_bytes())
    data[-10] ^= 0xFF
    dump.write_bytes(bytes(data))
    return rf"{re.escape(str(dump))} does not match its sha256 in the manifest; the backup is damaged"


def _other_format(path: Path) -> str:
    _edit_manifest(path, format_version=2)
    return r"the backup is of format version 2; this Triune reads version 1 only"


def _newer_migrations(path: Path) -> str:
    manifest = json.loads((path / MANIFEST).read_text())
    _edit_manifest(
        path,
        migrations={**manifest["migrations"], "control": [*manifest["migrations"]["control"], "0099_future"]},
    )
    return r"has migrations this version of Triune does not have \(control.0099_future\); restore it with"


@pytest.mark.parametrize(
    "damage",
    [
        _missing_part,
        _missing_manifest,
        _corrupt_manifest,
        _truncated_dump,
        _flipped_byte,
        _other_format,
        _newer_migrations,
    ],
)
def test_a_bad_backup_is_refused_and_nothing_is_restored(damage, backup, fresh_db, settings, tmp_path):
    bad = _broken_copy(backup, tmp_path, "bad")
    message = damage(bad)
    new_root = _use_storage(settings, tmp_path / "target" / "storage")
    with pytest.raises(BackupError, match=message):
        backup_restore(path=bad, db=fresh_db)
    assert _tables(fresh_db) == {}
    assert list(new_root.parent.iterdir()) == [new_root] and not any(new_root.iterdir())


def test_a_dump_that_fails_to_load_leaves_the_database_and_storage_untouched(
    backup, fresh_db, settings, tmp_path
):
    """A dump cut short when it was written (the manifest agrees with it): pg_restore fails part way,
    in one transaction, so no table is left behind, and the unpacked storage folder is removed."""
    bad = _broken_copy(backup, tmp_path, "cut")
    dump = bad / DATABASE_PART
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) * 2 // 3])
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["database"].update(
        size=dump.stat().st_size, sha256=hashlib.sha256(dump.read_bytes()).hexdigest()
    )
    (bad / MANIFEST).write_text(json.dumps(manifest))
    new_root = _use_storage(settings, tmp_path / "target" / "storage")
    with pytest.raises(BackupError, match=r"^pg_restore failed: "):
        backup_restore(path=bad, db=fresh_db)
    assert _tables(fresh_db) == {}
    assert list(new_root.parent.iterdir()) == [new_root] and not any(new_root.iterdir())


def test_the_command_line_says_what_is_wrong_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "restore", str(tmp_path / "nowhere")],
        cwd=ROOT,
        env={**os.environ, "TRIUNE_TESTING": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # The last line; a library may log a line of its own before it.
    assert result.stderr.strip().splitlines()[-1] == (
        f"CommandError: {tmp_path / 'nowhere'} is not a backup directory (it should hold manifest.json)"
    )


def test_missing_client_tools_are_named(populated, tmp_path, monkeypatch):
    from control.services import backup as service

    monkeypatch.setattr(service, "_tool_dirs", lambda major: [])
    with pytest.raises(
        BackupError, match=r"^pg_dump and pg_restore of PostgreSQL \d+ are missing \(the server is "
    ):
        backup_create(out=tmp_path / "never")
    assert list(tmp_path.iterdir()) == [tmp_path / "storage"]
