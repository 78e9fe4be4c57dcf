"""The ServiceNow backend (``SECURE_EXPORT_ITSM=servicenow``): incidents or Event Management events.

One concern per module; :mod:`.backend` wires them into :class:`ServiceNowBackend`.
docs/servicenow.md describes the behaviour and the configuration.
"""

from receiver.itsm.base import CredentialsRejected
from receiver.itsm.servicenow.backend import ServiceNowBackend
from receiver.itsm.servicenow.settings import ServiceNowSettings, ServiceNowSettingsError

__all__ = ["CredentialsRejected", "ServiceNowBackend", "ServiceNowSettings", "ServiceNowSettingsError"]
