"""Resources built once from settings: the one place where the environment is read."""

from __future__ import annotations

from dagster_project.settings import Settings, SettingsResource, load_settings
from resources.control_db import ControlDbResource
from resources.erp.resource import ErpResource
from resources.landing import IngestRulesResource, LandingResource
from resources.reference import ReferenceDataResource
from resources.warehouse import WarehouseResource
from resources.webhook import WebhookResource


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    settings = settings or load_settings()
    return {
        "landing": LandingResource(root=str(settings.landing_dir)),
        "warehouse": WarehouseResource(
            root=str(settings.warehouse_dir), memory_limit=settings.duckdb_memory_limit
        ),
        "reference": ReferenceDataResource(
            directory=str(settings.reference_dir), url=settings.reference_url
        ),
        "control_db": ControlDbResource(url=settings.control_db_url),
        "ingest_rules": IngestRulesResource(lateness_days=settings.lateness_days),
        "erp": ErpResource(
            kind=settings.erp_kind,
            url=settings.erp_url,
            database=settings.erp_database,
            login=settings.erp_login,
            rate_per_second=settings.erp_rate_per_second,
            concurrency=settings.erp_concurrency,
            batch_size=settings.erp_batch_size,
        ),
        "webhook": WebhookResource(endpoint=settings.webhook_url),
        "settings": SettingsResource.of(settings),
    }
