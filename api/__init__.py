"""HTTP: the FastAPI app, the native JSON API, and (later) Open311 and the web pages."""
