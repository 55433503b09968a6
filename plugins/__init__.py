"""Installed as aftersales.shipped_plugins (setup.cfg package_dir); found through importlib.resources."""
