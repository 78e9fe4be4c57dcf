"""The HTTP layer: the ASGI app, its alert endpoint, probes, ops endpoints and the uvicorn server."""
