"""The BMC Helix ITSM backend (``SECURE_EXPORT_ITSM=bmc-helix``), split by concern.

``settings`` (``SECURE_EXPORT_BMC_*``), ``auth`` (the JWT session), ``client`` (AR System REST calls
and failure classes), ``qualification`` (escaped ``q`` parameters), ``cmdb`` (CI lookup),
``incidents`` (create, note, reopen, resolve), ``routing`` (routing keys to BMC fields) and
``backend`` (the :class:`~receiver.itsm.base.Backend`). docs/bmc-helix.md describes it all.
"""

from receiver.itsm.base import CredentialsRejected
from receiver.itsm.bmc_helix.backend import BmcHelixBackend
from receiver.itsm.bmc_helix.settings import BmcSettings, BmcSettingsError

__all__ = ["BmcHelixBackend", "BmcSettings", "BmcSettingsError", "CredentialsRejected"]
