"""Circuit Explorer: the router and the sidebar shared by every page (`streamlit run app.py`)."""

import streamlit as st

from explorer import run_widgets, widgets

# An emoji favicon is drawn in the page; a ":material/…" one is fetched from fonts.gstatic.com (fails offline).
st.set_page_config(page_title="Circuit Explorer", page_icon="🕸️", layout="wide")
widgets.sidebar_model_picker()
run_widgets.follow_runs()  # ?run=<id>: a reload finds this browser's pruning runs again
st.navigation([
    st.Page("app_pages/prune.py", title="Prune", icon=":material/content_cut:", default=True),
    st.Page("app_pages/circuit.py", title="Circuit", icon=":material/account_tree:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/experiment.py", title="Experiment", icon=":material/science:"),
    st.Page("app_pages/prompts.py", title="Prompt lab", icon=":material/chat:"),
    st.Page("app_pages/learn.py", title="Learn", icon=":material/school:"),
]).run()
