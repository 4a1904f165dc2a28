"""The client-side commands of ``inferd``: ``predict``, ``models`` and ``bench``."""
