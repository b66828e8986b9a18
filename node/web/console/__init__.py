"""The operator console of the admin site (node/web/console_routes.py): its words, charts and page."""
