from django.urls import path

from control.api import alerts, compute, data, metrics, projects, run_outputs, runs, samples, tokens, uploads

app_name = "api"

urlpatterns = [
    path("projects/", projects.ProjectListCreateApi.as_view(), name="projects"),
    path("projects/<int:project_id>/", projects.ProjectDetailApi.as_view(), name="project"),
    path("projects/<int:project_id>/members/", projects.ProjectMembersApi.as_view(), name="project-members"),
    path(
        "projects/<int:project_id>/upload-reports/<str:report_id>/",
        uploads.UploadReportCsvApi.as_view(),
        name="upload-report",
    ),
    path("datasets/", uploads.DatasetListCreateApi.as_view(), name="datasets"),
    path("uploads/", uploads.UploadListCreateApi.as_view(), name="uploads"),
    path("uploads/<uuid:upload_id>/", uploads.UploadDetailApi.as_view(), name="upload"),
    path("datasets/<int:dataset_id>/", data.DatasetDetailApi.as_view(), name="dataset"),
    path("data-sources/", data.DataSourceListApi.as_view(), name="data-sources"),
    path("data-sources/<int:source_id>/", data.DataSourceDetailApi.as_view(), name="data-source"),
    path("data-sources/<int:source_id>/samples/", samples.SampleListApi.as_view(), name="samples"),
    path(
        "data-sources/<int:source_id>/samples/<str:split>/<int:index>/images/<int:image>/",
        samples.SampleImageApi.as_view(),
        name="sample-image",
    ),
    path(
        "data-sources/<int:source_id>/samples/<str:split>/<int:index>/score/",
        samples.SampleScoreApi.as_view(),
        name="sample-score",
    ),
    path("tags/", data.TagListCreateApi.as_view(), name="tags"),
    path("tags/<int:tag_id>/", data.TagDetailApi.as_view(), name="tag"),
    path("runs/", runs.RunListCreateApi.as_view(), name="runs"),
    path("runs/<int:run_id>/", runs.RunDetailApi.as_view(), name="run"),
    path("runs/<int:run_id>/cancel/", runs.RunCancelApi.as_view(), name="run-cancel"),
    path("runs/<int:run_id>/launch/", runs.RunLaunchApi.as_view(), name="run-launch"),
    path("runs/<int:run_id>/resume/", runs.RunResumeApi.as_view(), name="run-resume"),
    path("runs/<int:run_id>/clone/", runs.RunCloneApi.as_view(), name="run-clone"),
    path("runs/<int:run_id>/events/", runs.RunEventsApi.as_view(), name="run-events"),
    path("runs/<int:run_id>/logs/", run_outputs.RunLogsApi.as_view(), name="run-logs"),
    path("runs/<int:run_id>/artifacts/", run_outputs.RunArtifactsApi.as_view(), name="run-artifacts"),
    path(
        "runs/<int:run_id>/artifacts/<int:artifact_id>/download/",
        run_outputs.RunArtifactDownloadApi.as_view(),
        name="run-artifact-download",
    ),
    path("compute-targets/", compute.ComputeTargetListCreateApi.as_view(), name="compute-targets"),
    path("compute-targets/<int:target_id>/", compute.ComputeTargetDetailApi.as_view(), name="compute-target"),
    path("runs/<int:run_id>/metrics/", metrics.RunMetricsApi.as_view(), name="run-metrics"),
    path("alert-rules/", alerts.AlertRuleListCreateApi.as_view(), name="alert-rules"),
    path("alert-rules/<int:rule_id>/", alerts.AlertRuleDetailApi.as_view(), name="alert-rule"),
    path("alerts/", alerts.AlertListApi.as_view(), name="alerts"),
    path("alerts/<int:alert_id>/acknowledge/", alerts.AlertAcknowledgeApi.as_view(), name="alert-ack"),
    path("alerts/<int:alert_id>/resolve/", alerts.AlertResolveApi.as_view(), name="alert-resolve"),
    path("tokens/", tokens.TokenListCreateApi.as_view(), name="tokens"),
    path("tokens/<int:token_id>/", tokens.TokenDetailApi.as_view(), name="token"),
]
