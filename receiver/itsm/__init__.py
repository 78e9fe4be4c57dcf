"""ITSM backends behind one interface (``base.Backend``): ``embedded``, ``servicenow`` and ``bmc-helix``.

Each backend package holds one module per concern; what they share sits beside ``base.py``.
"""
