"""Installed as aftersales.templates (setup.cfg package_dir); found through importlib.resources."""
