"""Dataset uploads: resumable chunked uploads and atomic, content-addressed dataset versions."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max

from control.errors import Conflict, DomainError
from control.models import Dataset, DatasetVersion, DataSource, Project, Upload
from control.services.ingest import (
    REPORT_ERROR_ROWS,
    IngestError,
    StagedFile,
    content_hash,
    ingest_files,
    sanitize_filename,
)
from control.storage import ingest_root, publish_folder, remove_folder

logger = logging.getLogger(__name__)

POLICIES = ("reject", "keep_valid")


class UploadRejected(DomainError):
    """Rows failed validation; ``rows`` lists them (file, row, field, message)."""

    code = "invalid_samples"

    def __init__(self, message: str, *, rows: list[dict], report: dict) -> None:
        super().__init__(message)
        self.rows = rows
        self.report = report


def uploads_dir() -> Path:
    path = ingest_root() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_path(upload: Upload) -> Path:
    """Where an upload's bytes accumulate; the (sanitised) file name is kept, since readers go by suffix."""
    return uploads_dir() / f"{upload.id}-{upload.filename}"


# ----------------------------------------------------------------------------------------- chunked uploads


def upload_create(*, project: Project, user: AbstractBaseUser, filename: str, size: int) -> Upload:
    """Open a resumable upload of ``size`` bytes."""
    try:
        name = sanitize_filename(filename)
    except IngestError as exc:
        raise DomainError(str(exc), fields={"filename": [str(exc)]}) from exc
    limit = settings.TRIUNE_MAX_UPLOAD_BYTES
    if size > limit:
        raise DomainError(
            f"{name} is {size} bytes; the limit is {limit} bytes", fields={"size": ["too large"]}
        )
    upload = Upload.objects.create(project=project, user=user, filename=name, size=size)
    upload_path(upload).touch()
    return upload


def upload_append(*, upload: Upload, offset: int, stream, length: int) -> Upload:
    """Append ``length`` bytes read from ``stream`` at ``offset``, which must equal what was received."""
    with transaction.atomic():
        upload = Upload.objects.select_for_update().get(pk=upload.pk)
        if upload.status != Upload.Status.RECEIVING:
            raise Conflict(f"upload {upload.pk} is {upload.status}; it takes no more bytes")
        if offset != upload.received:
            raise Conflict(
                f"chunk starts at byte {offset} but the upload has {upload.received} bytes; "
                f"resume from byte {upload.received}"
            )
        if offset + length > upload.size:
            raise DomainError(f"chunk ends at byte {offset + length}, past the declared size {upload.size}")
        path = upload_path(upload)
        written = 0
        try:
            with open(path, "r+b") as handle:
                handle.seek(offset)
                handle.truncate()
                while written < length:
                    block = stream.read(min(1 << 20, length - written))
                    if not block:
                        break
                    handle.write(block)
                    written += len(block)
        except OSError:
            # A full disk: what was written of the chunk goes, so it can be sent again whole.
            os.truncate(path, offset)
            raise
        if written != length:
            with open(path, "r+b") as handle:
                handle.truncate(offset)
            raise DomainError(f"the chunk was cut short: got {written} of {length} bytes; send it again")
        upload.received = offset + length
        if upload.received == upload.size:
            upload.status = Upload.Status.COMPLETE
        upload.save(update_fields=["received", "status", "updated_at"])
    return upload


def upload_delete(*, upload: Upload) -> None:
    upload_path(upload).unlink(missing_ok=True)
    upload.delete()


# ----------------------------------------------------------------------------------------- dataset versions


@dataclass(frozen=True)
class VersionOutcome:
    version: DatasetVersion
    created: bool


def _dataset_for(project: Project, name: str, user: AbstractBaseUser, description: str) -> Dataset:
    """The project's dataset ``name``, created now; called only once a version is about to be committed."""
    try:
        with transaction.atomic():
            dataset, _ = Dataset.objects.get_or_create(
                project=project, name=name, defaults={"created_by": user, "description": description}
            )
    except IntegrityError:
        dataset = Dataset.objects.get(project=project, name=name)
    return dataset


def dataset_version_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str,
    files: list[StagedFile],
    description: str = "",
    policy: str = "reject",
    test_fraction: float = 0.1,
    seed: int = 0,
) -> VersionOutcome:
    """Validate ``files`` and commit them atomically as a new immutable version of dataset ``name``.

    The same bytes again (same file names and contents) return the existing
    version. With policy ``reject`` any invalid row refuses the whole upload;
    with ``keep_valid`` the valid rows are kept and the rest reported. On any
    failure nothing remains: no version, no files.
    """
    if policy not in POLICIES:
        raise DomainError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not name.strip():
        raise DomainError("name must not be blank", fields={"name": ["must not be blank"]})
    if not 0.0 <= test_fraction < 1.0:
        raise DomainError(f"test_fraction must be in [0, 1), got {test_fraction}")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise DomainError("two files have the same name; give every file a distinct name")
    digest = content_hash(files)
    name = name.strip()
    # The dataset itself is created only with its first version: a refused upload leaves nothing.
    existing = DatasetVersion.objects.filter(
        dataset__project=project, dataset__name=name, content_hash=digest
    ).first()
    if existing is not None:
        return VersionOutcome(existing, created=False)

    staging = ingest_root() / "staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    final: str | None = None
    try:
        try:
            result = ingest_files(
                files,
                staging,
                test_fraction=test_fraction,
                seed=seed,
                max_image_pixels=settings.TRIUNE_MAX_IMAGE_PIXELS,
                errors_csv=staging / "errors.csv",
            )
        except IngestError as exc:
            raise DomainError(str(exc)) from exc
        report = result.report()
        report["policy"] = policy
        report["files"] = names
        if result.error_count:
            report["errors_csv"] = keep_error_report(project, staging / "errors.csv")
        if result.error_count and (policy == "reject" or result.valid_rows == 0):
            first = result.errors[0]
            raise UploadRejected(
                f"{result.total_rows - result.valid_rows} of {result.total_rows} samples are invalid"
                f" (first: {first.file} row {first.row}, {first.field}: {first.message});"
                " fix them, or upload with policy keep_valid to keep the valid rows",
                rows=report["errors"][:REPORT_ERROR_ROWS],
                report=report,
            )
        if result.valid_rows == 0:
            raise DomainError("the files hold no sample")

        with transaction.atomic():
            dataset = _dataset_for(project, name, user, description)
            locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
            if DatasetVersion.objects.filter(dataset=locked, content_hash=digest).exists():
                return VersionOutcome(DatasetVersion.objects.get(dataset=locked, content_hash=digest), False)
            number = (DatasetVersion.objects.filter(dataset=locked).aggregate(m=Max("number"))["m"] or 0) + 1
            relative = f"datasets/{project.pk}/{locked.pk}/v{number}-{digest[:12]}"
            try:
                final = publish_folder(staging, relative)
            except OSError as exc:
                logger.exception("dataset version %s could not be written to storage", relative)
                raise DomainError(f"the dataset could not be written to storage ({exc}); try again") from None
            size = sum(f.path.stat().st_size for f in files)
            version = DatasetVersion.objects.create(
                dataset=locked,
                number=number,
                content_hash=digest,
                storage_uri=final,
                size_bytes=size,
                sample_count=result.valid_rows,
                report=report,
                created_by=user,
            )
            for summary in result.sources.values():
                DataSource.objects.create(
                    project=project,
                    dataset_version=version,
                    name=summary.name,
                    task_type=summary.task_type
                    if summary.task_type in DataSource.TaskType.values
                    else "other",
                    verifier=summary.verifier,
                    train_count=summary.counts.get("train", 0),
                    test_count=summary.counts.get("test", 0),
                    stats=summary.stats(),
                    files={split: [f"{final}/{n}" for n in ns] for split, ns in summary.files.items()},
                )
        return VersionOutcome(version, created=True)
    except BaseException:
        if final is not None:
            remove_folder(final)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def error_report_path(project_id: int, report_id: str) -> Path:
    return ingest_root() / "reports" / str(project_id) / f"{report_id}.csv"


def keep_error_report(project: Project, csv_path: Path) -> str:
    """Keep the full error list of an upload (accepted or refused) as a CSV; returns its id."""
    report_id = uuid.uuid4().hex
    target = error_report_path(project.pk, report_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(csv_path), target)
    return report_id


def stage_uploaded_file(uploaded, directory: Path) -> StagedFile:
    """Copy a Django UploadedFile into ``directory`` under its sanitised name."""
    try:
        name = sanitize_filename(uploaded.name or "")
    except IngestError as exc:
        raise DomainError(str(exc)) from exc
    target = directory / name
    if target.exists():
        raise DomainError(f"two files are named {name}; give every file a distinct name")
    with open(target, "wb") as handle:
        for chunk in uploaded.chunks(1 << 20):
            handle.write(chunk)
    return StagedFile(name=name, path=target)


def staging_tempdir() -> Path:
    base = ingest_root() / "staging"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upload-", dir=base))
