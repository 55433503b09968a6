"""Installed as aftersales.migrations (setup.cfg package_dir); found through importlib.resources."""
