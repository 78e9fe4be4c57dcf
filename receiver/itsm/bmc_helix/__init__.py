"""The BMC Helix ITSM backend (``SECURE_EXPORT_ITSM=bmc-helix``), split by concern.

``settings``, ``auth`` (the JWT session), ``client`` (AR System REST calls), ``qualification``,
``cmdb``, ``incidents``, ``routing`` and ``backend`` (``BmcHelixBackend``); docs/bmc-helix.md.
"""
