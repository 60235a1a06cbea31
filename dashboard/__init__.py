"""GROVER Lens dashboard: a Streamlit app that shows the artifacts of a run folder (see analysis.run)."""
