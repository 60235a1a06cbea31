"""Dashboard pages, one file per page; app.py routes to them with st.navigation."""
