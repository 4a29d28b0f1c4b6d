from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView


def api_not_found(request, exception=None):
    return JsonResponse(
        {"message": f"no API endpoint at {request.path[:200]}", "code": "not_found", "extra": {}}, status=404
    )


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("control.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI from the sidecar package's static files, its initialiser a script of its own
    # (?script): the Content-Security-Policy allows no inline script.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="webui/api_docs.html"),
        name="api-docs",
    ),
    path("", include("webui.urls")),
]

handler404 = "webui.views.not_found"
handler500 = "webui.views.server_error"
