"""Figures for lab meetings: presentation mode, and PNG / SVG / CSV downloads under every figure.

``show_figure`` is how a page draws a plotly figure: it applies presentation styling when that mode
is on and puts the download buttons beside it. PNG and SVG are rendered on the server by kaleido
through the system Chromium, only when the button is clicked (deferred data), so drawing a page
costs nothing extra; without Chromium the buttons say how to get it, and the chart's own camera
button still saves a PNG in the browser.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

PRESENT_KEY = "present"  # session state and ?present=1: presentation mode
PRESENTATION_FONT = 22  # px, figure text in presentation mode
PRESENTATION_HEIGHT = 760  # px, one figure per screen
EXPORT_SCALE = 2  # PNG resolution multiplier (sharp on slides)
_EXPORT_WIDTH, _EXPORT_HEIGHT = 1400, 900  # px of the exported image

# Injected in presentation mode: no sidebar or header, larger text, full width.
_PRESENTATION_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header[data-testid="stHeader"] {display: none;}
.block-container {padding-top: 1rem; max-width: 100%;}
html, body, [data-testid="stMarkdownContainer"] p {font-size: 1.35rem;}
h1 {font-size: 2.6rem !important;} h2, h3 {font-size: 2rem !important;}
</style>
"""


def presenting() -> bool:
    """Return True when presentation mode is on (sidebar toggle or ``?present=1`` in the link)."""
    return bool(st.session_state.get(PRESENT_KEY))


def apply_presentation_mode() -> None:
    """Hide the chrome and enlarge the text when presenting; called once per run by app.py."""
    if presenting():
        st.markdown(_PRESENTATION_CSS, unsafe_allow_html=True)


def styled(fig: go.Figure) -> go.Figure:
    """Return the figure with larger fonts and height in presentation mode (unchanged otherwise)."""
    if not presenting():
        return fig
    fig = go.Figure(fig)
    fig.update_layout(font={"size": PRESENTATION_FONT}, height=PRESENTATION_HEIGHT,
                      title={"font": {"size": PRESENTATION_FONT + 6}})
    return fig


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-`` and ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "figure"


def chromium_available() -> bool:
    """kaleido renders images through a Chromium/Chrome it finds on PATH."""
    return any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome"))


def image_bytes(fig: go.Figure, image_format: str) -> bytes:
    """Render ``fig`` as PNG or SVG (kaleido); WebGL traces become raster inside an SVG."""
    return fig.to_image(format=image_format, width=_EXPORT_WIDTH, height=_EXPORT_HEIGHT,
                        scale=EXPORT_SCALE if image_format == "png" else 1)


def download_buttons(fig: go.Figure | None, *, stem: str, key: str, data: pd.DataFrame | None = None,
                     data_fn: Callable[[], pd.DataFrame] | None = None) -> None:
    """Draw PNG, SVG and CSV download buttons in one row (each renders only when clicked)."""
    stem = slug(stem)
    columns = st.columns(3)
    if fig is not None:
        # The figure is copied only when a button is clicked: copying (and validating) a figure of
        # thousands of points on every run costs tens of milliseconds. Pages do not change a figure
        # after drawing it (figures are cached and shared between runs, see loaders.built_once).
        for column, image_format, mime in ((columns[0], "png", "image/png"), (columns[1], "svg", "image/svg+xml")):
            with column:
                if chromium_available():
                    st.download_button(
                        image_format.upper(), lambda f=fig, fmt=image_format: image_bytes(go.Figure(f), fmt),
                        file_name=f"{stem}.{image_format}", mime=mime, key=f"{key}_{image_format}",
                        on_click="ignore", icon=":material/image:",
                        help=f"The figure as {image_format.upper()}, rendered on the server.")
                else:
                    st.button(image_format.upper(), disabled=True, key=f"{key}_{image_format}",
                              help="Image export needs Chromium (`apt-get install chromium`); "
                              "the chart's camera button saves a PNG meanwhile.")
    if data is not None or data_fn is not None:
        with columns[2]:
            st.download_button(
                "CSV", lambda: (data if data is not None else data_fn()).to_csv(index=False),
                file_name=f"{stem}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                icon=":material/table:", help="The data behind the figure.")


def show_figure(fig: go.Figure, *, stem: str, key: str, data: pd.DataFrame | None = None,
                data_fn: Callable[[], pd.DataFrame] | None = None, **chart_options):
    """Draw a plotly figure (presentation-styled when presenting) with PNG/SVG/CSV downloads under it.

    Returns what ``st.plotly_chart`` returns (the selection event when ``on_select`` is given).
    """
    config = {"displaylogo": False,
              "toImageButtonOptions": {"format": "png", "filename": slug(stem), "scale": EXPORT_SCALE}}
    config.update(chart_options.pop("config", {}))
    event = st.plotly_chart(styled(fig), key=key, config=config, **chart_options)
    download_buttons(fig, stem=stem, key=f"{key}_download", data=data, data_fn=data_fn)
    return event
