"""Widgets several pages share."""
from __future__ import annotations

from collections.abc import Sequence

import streamlit as st


def layer_choice(label: str, layers: Sequence[int], *, key: str, single_note: str, help: str | None = None) -> int:
    """Return the layer chosen on a select slider over ``layers`` (widget ``key``).

    A select slider needs two options: with one layer, the layer is written as text, as
    ``**Layer N** (single_note)``, and returned.
    """
    if len(layers) > 1:
        return st.select_slider(label, options=list(layers), key=key, help=help)
    st.markdown(f"**Layer {layers[0]}** ({single_note})")
    return layers[0]
