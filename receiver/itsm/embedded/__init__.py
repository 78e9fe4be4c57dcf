"""The embedded ITSM backend: work items and a small CMDB in the receiver's own database (SQLite or PostgreSQL).

docs/work-items.md gives the semantics and what each module of this package holds.
"""
