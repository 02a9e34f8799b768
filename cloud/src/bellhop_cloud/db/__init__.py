"""Storage: one schema and one migration set for SQLite and PostgreSQL."""
