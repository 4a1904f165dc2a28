"""Model files that ``inferd init`` and ``inferd example`` copy into a repository as ``model.py``."""
