"""Placeholder while the page is written (issue 6)."""
import streamlit as st

st.title("compare")
st.info("This page is not built yet.")
