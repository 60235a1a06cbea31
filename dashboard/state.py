"""The view lives in the link: widget values mirrored to ``?param=value`` so a copied URL reopens them.

A page calls ``from_link(key, param, parse=..., valid=...)`` before drawing a widget with that key:
when the widget has no value yet, the link's value (when valid) becomes its value. After the
widget, ``to_link(param, value)`` writes the current value back. app.py keeps ``?run=`` and
``?present=``; every page adds its own parameters (layer, colour, token, ...).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st


def from_link(key: str, param: str, *, parse: Callable[[str], Any] = str,
              valid: Callable[[Any], bool] = lambda value: True) -> None:
    """Seed widget ``key`` from ``?param=`` when the widget has no value yet (first visit of the page).

    Ignored when the link lacks the parameter or its value does not parse or is not ``valid``.
    """
    if key in st.session_state:
        return
    raw = st.query_params.get(param)
    if raw is None:
        return
    try:
        value = parse(raw)
    except (TypeError, ValueError):
        return
    if valid(value):
        st.session_state[key] = value


def to_link(param: str, value: Any) -> None:
    """Write the current value into the link (removed when None or empty)."""
    if value is None or value == "":
        if param in st.query_params:
            del st.query_params[param]
        return
    text = str(value)
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def seed_choice(key: str, param: str, options: list, default, *, parse: Callable[[str], Any] = str) -> None:
    """Seed widget ``key`` from ``?param=`` (``from_link``); a value that is not an option becomes ``default``.

    Keeps a still-valid value across reruns, and repairs one left over from another run (other layers,
    other vocabularies).
    """
    from_link(key, param, parse=parse, valid=lambda value: value in options)
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def keep(*keys: str) -> None:
    """Keep these widgets' values through runs that do not draw them (another page, a closed tab).

    Streamlit forgets a widget's value after a run without the widget; a value written back through
    Session State is the page's own and stays.
    """
    for key in keys:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def view_tabs(key: str, views: Mapping[str, str], *, param: str = "view") -> tuple[str, dict[str, Any]]:
    """Draw lazy tabs whose choice lives in the link (``?view=<name>``); return ``(open view, {view: tab})``.

    ``views`` maps a view's link name to its tab label (first: the default, left out of the link). Only
    the open tab is meant to be filled: switching tabs reruns the page (``on_change="rerun"``), so a page
    draws the charts of one view instead of all of them (the browser's drawing time grows with every chart).
    Call ``keep`` with the closed tabs' widget keys first so that their choices survive.
    """
    labels = list(views.values())
    from_link(key, param, parse=lambda text: views.get(text), valid=lambda label: label is not None)
    if st.session_state.get(key) not in labels:
        st.session_state[key] = labels[0]
    containers = st.tabs(labels, key=key, on_change="rerun")
    view = next(name for name, label in views.items() if label == st.session_state[key])
    to_link(param, None if view == next(iter(views)) else view)
    return view, dict(zip(views, containers))
