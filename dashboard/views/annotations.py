"""Placeholder while the page is written (issue 6)."""
import streamlit as st

st.title("annotations")
st.info("This page is not built yet.")
