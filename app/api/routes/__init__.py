"""API routers, one module per resource: jobs, results, health, and the web pages."""
