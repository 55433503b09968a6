"""The web layer: blueprints that parse a request, call one service function and render."""
from __future__ import annotations

from flask import Flask

from .site import site


def register_blueprints(app: Flask, url_prefix: str) -> None:
    app.register_blueprint(site, url_prefix=url_prefix or None)
