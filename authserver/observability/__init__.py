"""Observability: metric families (``metrics``) and the health, readiness and access-log
surface (``http``)."""
