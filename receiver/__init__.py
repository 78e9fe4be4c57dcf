"""The secure-export receiver: authenticate, parse, persist, then apply alerts to an ITSM backend."""
