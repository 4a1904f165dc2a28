"""The model store: what is on disk, what a model declares, and the versions kept loaded."""
