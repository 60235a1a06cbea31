"""Shared widgets (dashboard/widgets.py), run in AppTest from a function."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def layer_page(layers: list[int]) -> None:
    """A page with one layer choice; what it returns is kept in session state."""
    import streamlit as st

    from dashboard import widgets

    st.session_state["chosen"] = widgets.layer_choice("Layer (0 = input embeddings)", layers, key="layer",
                                                      single_note="the only layer in this run")


def open_page(layers: list[int]) -> AppTest:
    at = AppTest.from_function(layer_page, args=(layers,), default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_layer_choice_is_a_slider_over_the_layers():
    at = open_page([0, 2, 4])
    slider = at.select_slider(key="layer")
    assert slider.options == ["0", "2", "4"] and at.session_state["chosen"] == 0
    slider.set_value(4).run()
    assert at.session_state["chosen"] == 4 and not at.markdown


def test_one_layer_is_written_as_text():
    at = open_page([3])
    assert not at.select_slider
    assert at.markdown[0].value == "**Layer 3** (the only layer in this run)"
    assert at.session_state["chosen"] == 3
