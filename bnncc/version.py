"""bnncc's version (a module of its own: the pipeline records it in every library without importing the package
``__init__``)."""

__version__ = "0.1.0"
