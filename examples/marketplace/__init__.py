"""A small marketplace that mounts the after-sales module (see README.md here and docs/embedding.md)."""
