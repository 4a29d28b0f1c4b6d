from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "control"
    label = "control"
    verbose_name = "Triune control plane"
    default_auto_field = "django.db.models.BigAutoField"
