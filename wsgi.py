"""Entry point for a standalone install: ``gunicorn wsgi:app`` or ``flask --app wsgi run``."""
from aftersales import create_app

app = create_app()
