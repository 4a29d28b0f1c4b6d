"""Domain models of the control plane."""

from control.models.alerts import Alert, AlertDelivery, AlertRule, AlertState, NotificationChannel
from control.models.compute import ComputeTarget
from control.models.data import Dataset, DatasetVersion, DataSource, Tag
from control.models.metrics import MetricPoint
from control.models.projects import Project, ProjectMembership
from control.models.runs import Run, RunArtifact, RunEvent, RunSource
from control.models.tokens import ApiToken
from control.models.uploads import Upload

__all__ = [
    "Alert",
    "AlertDelivery",
    "AlertRule",
    "AlertState",
    "ApiToken",
    "ComputeTarget",
    "DataSource",
    "Dataset",
    "DatasetVersion",
    "MetricPoint",
    "NotificationChannel",
    "Project",
    "ProjectMembership",
    "Run",
    "RunArtifact",
    "RunEvent",
    "RunSource",
    "Tag",
    "Upload",
]
