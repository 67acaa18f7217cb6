"""One module or package per network. Protocol knowledge only: no database, no websockets,
no FastAPI.

Each turns a network's wire format into the dataclasses of :mod:`app.networks.base`
and back. :mod:`app.ingest` runs them; :mod:`app.rooms` stores what they yield.
"""
