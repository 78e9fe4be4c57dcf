"""Choosing the ITSM backend from the settings (``SECURE_EXPORT_ITSM``): part of wiring the app.

Each backend module is imported only when selected, so an embedded deployment never loads an ITSM client.
"""

from __future__ import annotations

from receiver.itsm.base import Backend
from receiver.settings import ReceiverSettings


def create_backend(settings: ReceiverSettings) -> Backend:
    """The backend ``settings.itsm`` names, configured from the settings.

    ``embedded`` keeps work items and CIs in ``settings.db`` (the inbox's file) with the
    configured severity → priority map; ``servicenow`` reads its own ``SECURE_EXPORT_SERVICENOW_*``
    variables (and raises with a message naming them when they are wrong).
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

        return ServiceNowBackend.from_env(reopen_window=settings.reopen_window)
    if settings.itsm == "bmc-helix":
        from receiver.itsm.bmc_helix.backend import BmcHelixBackend

        return BmcHelixBackend.from_env()
    raise ValueError(
        f"unknown ITSM backend {settings.itsm!r}; set SECURE_EXPORT_ITSM to embedded, servicenow or bmc-helix"
    )
