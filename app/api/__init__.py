"""The HTTP service: the FastAPI app factory (`app.api.main.create_app`), routes and deps."""
