"""The SQLite store (the embedded default): the inbox, operators' actions, and the write lock."""
