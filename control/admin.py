from django.contrib import admin

from control import models


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(models.ProjectMembership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]
    list_filter = ["role"]


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "created_at"]


@admin.register(models.DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset", "number", "sample_count", "content_hash", "created_at"]


@admin.register(models.DataSource)
class DataSourceAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "task_type", "verifier", "train_count", "test_count"]
    list_filter = ["task_type", "verifier"]


@admin.register(models.Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "project"]


@admin.register(models.Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "status", "preset", "last_step", "created_at"]
    list_filter = ["status", "preset"]


@admin.register(models.AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "key", "condition", "threshold", "enabled"]


@admin.register(models.Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["rule", "run", "source", "state", "step", "fired_at"]
    list_filter = ["state"]


@admin.register(models.ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "run", "created_at", "revoked_at"]
    exclude = ["digest"]


@admin.register(models.ComputeTarget)
class ComputeTargetAdmin(admin.ModelAdmin):
    """Read-only here: changes go through /api/v1/compute-targets/, which checks them."""

    list_display = ["name", "address", "enabled", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["run", "at", "from_status", "to_status", "attempt"]
    list_filter = ["to_status"]


@admin.register(models.RunArtifact)
class RunArtifactAdmin(admin.ModelAdmin):
    list_display = ["run", "kind", "step", "size_bytes", "created_at"]
