from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from smsproxy.common.readiness import readyz
from smsproxy.common.views import api_docs, api_schema, healthz
from smsproxy.proxy.metrics import metrics

admin.site.site_header = "smsproxy administration"
admin.site.site_title = "smsproxy"
# The app list is on the index page; as a sidebar it took ~300 px from every list at 1400 px,
# where the lists must show every column (tests/browser/test_lists_fit.py).
admin.site.enable_nav_sidebar = False

handler404 = "smsproxy.common.views.handler404"
handler500 = "smsproxy.common.views.handler500"

urlpatterns = [
    # "View site" in the admin links to /: there is no public site, so it leads back to the admin.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", api_schema, name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("api/", include("smsproxy.numbers.api_urls")),
    path("api/", include("smsproxy.proxy.api_urls")),
    path("webhooks/vonage/", include("smsproxy.proxy.webhook_urls")),
]
