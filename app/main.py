"""The stakes dashboard: ``streamlit run app/main.py``.

Pages live in ``app/views``; they hold widgets and layout only and call ``stakes_core`` for
every number and figure. Opens on the offline digits default, or on the settings in the link's
query string (the page is the link's path). Plugins named by
``STAKES_PLUGINS`` (or installed entry points) load at the first registry lookup; their methods
and encoders join the Setup page's choices, and the pages they register
(:func:`stakes_core.lab.pages.register_page`) join the navigation."""

from pathlib import Path

import pandas  # noqa: F401  (imported before the warm-up threads: plotly must never see a half-imported pandas)
import streamlit as st

from stakes_core.lab.pages import list_pages

import cached
import lab

# The icon ships with the app: a Material icon would be fetched from fonts.gstatic.com, which fails offline.
st.set_page_config(page_title="stakes: structure-faithful unlearning",
                   page_icon=str(Path(__file__).with_name("favicon.png")), layout="wide")
lab.init_settings()
lab.sync_url()

pages = {
    "Unlearn": [
        st.Page("views/setup.py", title="Setup", icon=":material/tune:", default=True),
        st.Page("views/run.py", title="Run", icon=":material/play_arrow:"),
        st.Page("views/compare.py", title="Compare", icon=":material/table_chart:"),
        st.Page("views/requests.py", title="Requests", icon=":material/playlist_remove:"),
    ],
    "Look inside": [
        st.Page("views/structure.py", title="Structure", icon=":material/hub:"),
        st.Page("views/changes.py", title="Changes", icon=":material/compare_arrows:"),
        st.Page("views/embedding.py", title="Embedding", icon=":material/scatter_plot:"),
        st.Page("views/gradcam.py", title="Grad-CAM", icon=":material/visibility:"),
        st.Page("views/retrieval.py", title="Retrieval", icon=":material/image_search:"),
        st.Page("views/stakes.py", title="Stakes", icon=":material/anchor:"),
        st.Page("views/side_by_side.py", title="Side by side", icon=":material/view_column:"),
    ],
    "Teach": [st.Page("views/lesson.py", title="Lesson", icon=":material/school:")],
}
for page in list_pages():
    pages.setdefault(page.section, []).append(
        st.Page(page.render, title=page.title, icon=page.icon, url_path=page.url_path)
    )
st.sidebar.caption(
    "StructGuard (Hong, Shin & Kim, CVPR 2026) pins the embedding to one text anchor per class while "
    "a model forgets k training images. Set up a run, run it, then look inside."
)
try:
    st.navigation(pages).run()
finally:  # after the page is drawn: the compilation holds the GIL and would delay the first paint
    cached.umap_warm_up()
    cached.static_export_warm_up()
