"""Where the module's own files are, installed from a wheel or editable from a checkout.

The top-level ``templates/``, ``migrations/`` and ``plugins/`` folders of the source tree are
installed as the packages ``aftersales.templates``, ``aftersales.migrations`` and
``aftersales.shipped_plugins`` (``setup.cfg``: ``package_dir``), so they are found through
``importlib.resources`` wherever the package is, never through the parent of the package folder.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_folder(package: str) -> Path:
    """The folder of one of the module's packages, as a path (Jinja and Alembic need one)."""
    folder = files(package)
    if not isinstance(folder, Path) or not folder.is_dir():
        raise RuntimeError(f"{package} is not an unpacked folder ({folder!r}); install aftersales from a wheel or a checkout")
    return folder


TEMPLATES_DIR = package_folder("aftersales.templates")
MIGRATIONS_DIR = package_folder("aftersales.migrations")
SHIPPED_PLUGINS_DIR = package_folder("aftersales.shipped_plugins")
STATIC_DIR = package_folder("aftersales") / "static"
