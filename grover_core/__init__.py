"""grover_core: genome reading, BPE vocabularies, tokenizers, BERT MLM pretraining and embedding extraction.

This layer knows no plots and no dashboard: it reads genomes and trains and runs models.
"""
__version__ = "0.1.0"
