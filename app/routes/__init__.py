"""HTTP and websocket routes, one module per area, assembled in :func:`app.main.create_app`."""
