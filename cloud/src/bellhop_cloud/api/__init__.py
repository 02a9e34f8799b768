"""The REST API: thin FastAPI routes over the domain modules."""
