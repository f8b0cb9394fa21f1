"""The API server: FastAPI routers for resources, logs and events, plus the controllers.

``ketch.server.app.create_app`` builds the app; ``ketch up`` serves it.
"""
