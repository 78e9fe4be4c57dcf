"""The ServiceNow backend (``SECURE_EXPORT_ITSM=servicenow``): Table API incidents or Event Management events.

One concern per module; :mod:`.backend` wires them into ``ServiceNowBackend``. docs/servicenow.md
describes the behaviour, the configuration and a map of the modules.
"""
