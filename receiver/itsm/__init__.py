"""ITSM backends behind one interface (``base.Backend``): ``embedded`` and ``servicenow``."""
