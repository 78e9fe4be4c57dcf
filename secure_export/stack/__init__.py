"""The deployable stack: its config model and loaders, deploy-time rules, shared checks, and the program's body.

The components in ``secure_export.components`` use the checks and deploy rules here; only the program
(the repository's ``__main__.py``) reads and validates the stack config.
"""
