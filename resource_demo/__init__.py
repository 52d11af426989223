"""resource_demo: the companion resource-server guard and a platform-shaped demo API."""
