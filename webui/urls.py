from django.contrib.auth import views as auth_views
from django.urls import path

from webui import (
    alert_rule_views,
    alert_views,
    channel_views,
    data_views,
    launch_views,
    runs_views,
    token_views,
    views,
)

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("projects/new/", views.project_new, name="project-new"),
    path("projects/<int:project_id>/", views.project_detail, name="project"),
    path("projects/<int:project_id>/datasets/", data_views.datasets_page, name="datasets"),
    path("projects/<int:project_id>/datasets/upload/", data_views.dataset_upload_page, name="dataset-upload"),
    path("projects/<int:project_id>/sources/", data_views.sources_page, name="sources"),
    path("sources/<int:source_id>/", data_views.source_page, name="source"),
    path("sources/<int:source_id>/edit/", data_views.source_edit, name="source-edit"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("projects/<int:project_id>/runs/", runs_views.runs_page, name="runs"),
    path("projects/<int:project_id>/runs/compare/", runs_views.runs_compare, name="runs-compare"),
    path("projects/<int:project_id>/runs/new/", launch_views.run_new_page, name="run-new"),
    path("runs/<int:run_id>/clone/", launch_views.run_clone_page, name="run-clone"),
    path("projects/<int:project_id>/alerts/", alert_views.alerts_page, name="alerts"),
    path(
        "projects/<int:project_id>/alerts/<int:alert_id>/acknowledge/",
        alert_views.alert_acknowledge_view,
        name="alert-acknowledge",
    ),
    path(
        "projects/<int:project_id>/alerts/<int:alert_id>/resolve/",
        alert_views.alert_resolve_view,
        name="alert-resolve",
    ),
    path("projects/<int:project_id>/alert-rules/", alert_rule_views.alert_rules_page, name="alert-rules"),
    path(
        "projects/<int:project_id>/alert-rules/new/", alert_rule_views.alert_rule_new, name="alert-rule-new"
    ),
    path(
        "projects/<int:project_id>/alert-rules/restore/",
        alert_rule_views.alert_rules_restore,
        name="alert-rules-restore",
    ),
    path(
        "projects/<int:project_id>/alert-rules/<int:rule_id>/",
        alert_rule_views.alert_rule_edit,
        name="alert-rule-edit",
    ),
    path(
        "projects/<int:project_id>/alert-rules/<int:rule_id>/enabled/",
        alert_rule_views.alert_rule_enable,
        name="alert-rule-enable",
    ),
    path(
        "projects/<int:project_id>/alert-rules/<int:rule_id>/delete/",
        alert_rule_views.alert_rule_delete,
        name="alert-rule-delete",
    ),
    path("projects/<int:project_id>/channels/", channel_views.channels_page, name="channels"),
    path(
        "projects/<int:project_id>/channels/<int:channel_id>/test/",
        channel_views.channel_test_view,
        name="channel-test",
    ),
    path(
        "projects/<int:project_id>/channels/<int:channel_id>/delete/",
        channel_views.channel_delete_view,
        name="channel-delete",
    ),
    path("tokens/", token_views.tokens_page, name="tokens"),
    path("tokens/<int:token_id>/revoke/", token_views.token_revoke, name="token-revoke"),
]
