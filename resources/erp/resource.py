"""The ERP resource: builds the adapter named in configuration. It is the one module that
knows the adapters; they depend only on the interface in ``resources.erp.adapter``.
"""

from __future__ import annotations

import os

from resources.base import ConfigurableResource
from resources.erp.adapter import ErpAdapter
from resources.erp.tryton import TrytonAdapter


class ErpResource(ConfigurableResource):
    """The ERP that approved journals are published to; ``kind='none'`` publishes
    nothing (the close still writes import files). The password is read from the
    environment variable named in ``password_env`` when the adapter is built, never
    stored in config or logs."""

    kind: str = "none"
    url: str = ""
    database: str = ""
    login: str = ""
    password_env: str = "METERCLOSE_ERP_PASSWORD"
    rate_per_second: float = 20.0
    concurrency: int = 2
    batch_size: int = 100
    attempts: int = 5
    timeout_seconds: float = 120.0

    @property
    def configured(self) -> bool:
        return self.kind != "none"

    def adapter(self) -> ErpAdapter:
        if self.kind == "tryton":
            missing = [k for k in ("url", "database", "login") if not getattr(self, k)]
            if missing:
                raise ValueError(f"ERP kind 'tryton' needs {', '.join(missing)} (METERCLOSE_ERP_*)")
            password = os.environ.get(self.password_env)
            if not password:
                raise ValueError(
                    f"ERP kind 'tryton': environment variable {self.password_env} is empty"
                )
            return TrytonAdapter(
                url=self.url,
                database=self.database,
                login=self.login,
                password=password,
                rate_per_second=self.rate_per_second,
                batch_size=self.batch_size,
                pool_size=max(1, self.concurrency),
                timeout_seconds=self.timeout_seconds,
            )
        raise ValueError(f"ERP kind {self.kind!r} is not known (expected 'none' or 'tryton')")
