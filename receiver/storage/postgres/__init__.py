"""The PostgreSQL store for several replicas: connection, schema migrations, inbox, dispatch lease."""
