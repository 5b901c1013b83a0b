"""Dashboard pages added from outside the package.

    @register_page("Forget confidence", icon=":material/insights:")
    def forget_confidence() -> None:
        import streamlit as st
        st.title("Forget confidence")
        ...

The dashboard (``app/main.py``) adds every registered page to its navigation, under its
``section`` (``"Plugins"`` by default). A page is a function of no arguments that draws with
Streamlit when called; this module does not import Streamlit, so registering a page costs
nothing outside the dashboard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from stakes_core.infra.errors import ConfigError
from stakes_core.infra.registry import Registry


@dataclass(frozen=True)
class Page:
    """A registered page: the function that draws it, its title, icon and navigation section."""

    title: str
    render: Callable[[], None]
    icon: str
    section: str

    @property
    def url_path(self) -> str:
        """The page's address in the dashboard, ``plugin-<title in lower case, dashed>``."""
        return "plugin-" + re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


PAGES: Registry[Page] = Registry("page")


def register_page(
    title: str,
    render: Callable[[], None] | None = None,
    *,
    icon: str = ":material/extension:",
    section: str = "Plugins",
    overwrite: bool = False,
) -> Callable[[], None] | Callable[[Callable[[], None]], Callable[[], None]]:
    """Add ``render`` as the dashboard page ``title`` (also usable as ``@register_page(title)``).

    ``icon`` is a Streamlit icon (an emoji or ``:material/<name>:``); ``section`` is the
    heading the page is listed under in the navigation.
    """
    if not re.search(r"[A-Za-z0-9]", title):
        raise ConfigError(f"page title '{title}' needs at least one letter or digit")

    def add(function: Callable[[], None]) -> Callable[[], None]:
        page = Page(title, function, icon, section)
        clash = [other.title for other in list_pages() if other.url_path == page.url_path and other.title != title]
        if clash:
            raise ConfigError(f"page title '{title}' gives the same address as the page '{clash[0]}'; choose another")
        PAGES.register(title, page, overwrite=overwrite)
        return function

    return add(render) if render is not None else add


def list_pages() -> list[Page]:
    """The registered pages, by title."""
    return [PAGES.get(title) for title in PAGES.names()]
