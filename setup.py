"""Builds compile the translation catalogs (``.po`` → ``.mo``) before the package files are
collected, so wheels and editable installs carry them; the ``.mo`` files are never committed.
Everything else about the package is in setup.cfg."""
import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class build_py_with_catalogs(build_py):
    def run(self):
        spec = importlib.util.spec_from_file_location(
            "aftersales_catalogs", Path(__file__).resolve().parent / "aftersales" / "catalogs.py")
        catalogs = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = catalogs
        spec.loader.exec_module(catalogs)  # needs only Babel (a build requirement), not the package
        for domain in catalogs.domains():
            catalogs.compile_catalogs(domain)
        super().run()


setup(cmdclass={"build_py": build_py_with_catalogs})
