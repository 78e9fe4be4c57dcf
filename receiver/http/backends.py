"""Choosing the ITSM backend from the settings (``SECURE_EXPORT_ITSM``): part of wiring the app.

Each backend module is imported only when selected, so an embedded deployment never loads an ITSM client.
"""

from __future__ import annotations

from typing import TypeVar

from receiver.itsm.base import Backend
from receiver.settings import ReceiverSettings

BackendSettings = TypeVar("BackendSettings")


def create_backend(settings: ReceiverSettings) -> Backend:
    """The backend ``settings.itsm`` names, configured from the settings.

    ``embedded`` keeps work items and CIs in ``settings.db`` (the inbox's file) with the
    configured severity → priority map; ``servicenow`` and ``bmc-helix`` get the
    ``SECURE_EXPORT_SERVICENOW_*`` / ``SECURE_EXPORT_BMC_*`` settings validated with the rest
    (``load_settings(with_backend=True)``): nothing here reads the environment again.
    """
    if settings.itsm == "embedded":
        from receiver.storage import is_postgres

        if is_postgres(settings.db):
            from receiver.itsm.embedded.postgres import EmbeddedPostgresBackend

            return EmbeddedPostgresBackend(
                settings.db,
                auth=settings.db_auth,
                priority_map=settings.priority_map,
                reopen_window=settings.reopen_window,
            )
        from receiver.itsm.embedded.store import EmbeddedBackend

        return EmbeddedBackend(settings.db, priority_map=settings.priority_map, reopen_window=settings.reopen_window)
    if settings.itsm == "servicenow":
        from receiver.itsm.servicenow.backend import ServiceNowBackend

        return ServiceNowBackend(_loaded(settings.servicenow, settings.itsm), reopen_window=settings.reopen_window)
    if settings.itsm == "bmc-helix":
        from receiver.itsm.bmc_helix.backend import BmcHelixBackend

        return BmcHelixBackend(_loaded(settings.bmc, settings.itsm))
    raise ValueError(
        f"unknown ITSM backend {settings.itsm!r}; set SECURE_EXPORT_ITSM to embedded, servicenow or bmc-helix"
    )


def _loaded(backend_settings: BackendSettings | None, itsm: str) -> BackendSettings:
    """The backend's settings as ``load_settings`` validated them; a wiring mistake when they are missing."""
    if backend_settings is None:
        raise ValueError(
            f"SECURE_EXPORT_ITSM={itsm}: the receiver settings carry no {itsm} settings; "
            "load them with receiver.settings.load_settings(..., with_backend=True)"
        )
    return backend_settings
