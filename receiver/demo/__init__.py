"""``secure-export demo`` and what it brings: a local stand-in for Entra ID and a set of sample alerts."""
