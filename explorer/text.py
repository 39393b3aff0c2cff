"""User text shown literally: the one escape used wherever a prompt, file or circuit name meets Markdown (pure).

Streamlit renders Markdown in st.markdown / caption / error / warning / info / success and in the labels of
expanders, metrics and widgets: a prompt `**John**` would turn bold, `[x](https://example.com)` into a live
link, `:red[x]` red and `:smile:` into an emoji. Pass every piece of user text through `literal` first;
dataframes, `st.code` and `st.text` show text as it is and need nothing.
"""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation. These can start Markdown anywhere in a line: emphasis,
# code, links and images (`[`), HTML and autolinks (`<`), tables, strikethrough, maths (`$`), entities (`&`) and
# Streamlit's directives (`:red[…]`, `:material/…:`); a URL's `:` and `www.` are escaped against GFM's autolinks.
_PUNCT = re.compile(r"([\\`*_{}\[\]<>#|~$&:])")
_LINE_START = re.compile(r"^(\s*)(\d+\.|[-+=])")  # a list item or a heading underline at the start
_WWW = re.compile(r"(?i)\b(www)\.")
_SHORTCODE = re.compile(r":(?=[A-Za-z0-9_+\-]+:)")
_ZWJ = "\u2060"  # word joiner: invisible, stops an emoji shortcode (`:smile:`) that survives escaping


def literal(text: object) -> str:
    """`text` as Markdown that renders to exactly `text` (on one line: newlines become spaces)."""
    s = " ".join(str(text).splitlines())
    s = _PUNCT.sub(r"\\\1", _SHORTCODE.sub(":" + _ZWJ, s))
    s = _WWW.sub(r"\1\\.", s)
    return _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], s)


def bold(text: object) -> str:
    """User text in bold, still literal inside."""
    return f"**{literal(text)}**"
