"""The HTTP API: one NinjaAPI at /api/, each app's router under /api/v1/, docs at /api/docs."""

from ninja import NinjaAPI

from catalog.api import router as catalog_router
from core.api import router as core_router
from core.errors import install_error_handlers
from core.parser import JsonParser
from costs.api import router as costs_router
from health.api import router as health_router
from llmhive_site.metrics import router as metrics_router
from routing.api import router as routing_router

api = NinjaAPI(
    title="LLMHive",
    version="1",
    description="Which model, now? The LLMHive control plane: catalog, routing, usage and costs.",
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
    parser=JsonParser(),
)
install_error_handlers(api)

# Django tries the routers' URL patterns in this order, and each router passed costs a request
# a failed match: the hot endpoints' routers first (/route and /escalate, then /usage).
api.add_router("/v1/", routing_router)
api.add_router("/v1/", costs_router)
api.add_router("/v1/", health_router)
api.add_router("/v1/", catalog_router)
api.add_router("/v1/", metrics_router)
api.add_router("/v1/", core_router)
