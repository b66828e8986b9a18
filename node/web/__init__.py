"""The node's HTTP shell (aiohttp). See app.py: the application factory and how route
modules (`*_routes.py`) plug in."""
