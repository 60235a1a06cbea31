"""grover_lens: the pipeline and the ``grover`` command, chaining grover_core and analysis."""
__version__ = "0.1.0"
