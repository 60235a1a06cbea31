"""analysis: pure computations on embeddings and genomes (no Streamlit, no plotting state).

Functions take arrays and tables and return new ones; options are keyword-only.
"""
