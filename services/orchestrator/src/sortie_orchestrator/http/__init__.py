"""The orchestrator's HTTP side: API routers, SCIM, the pages."""
