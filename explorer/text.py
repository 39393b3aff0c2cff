"""User text shown literally: the one escape used wherever a prompt, file or circuit name meets Markdown (pure).

Streamlit renders Markdown in st.markdown / caption / error / warning / info / success and in the labels of
expanders, metrics and widgets: a prompt `**John**` would turn bold, `[x](https://example.com)` into a live
link, `:red[x]` red and `:smile:` into an emoji. Pass every piece of user text through `literal` first;
dataframes, `st.code` and `st.text` show text as it is and need nothing.
"""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation. These can start Markdown anywhere in a line: emphasis,
# code, links and images (`[`), HTML (`<`), tables, strikethrough, maths (`$`), entities (`&`) and Streamlit's
# colour directives (`:red[…]`; Streamlit finds those despite an escaped `[`, so they get a word joiner too).
_PUNCT = re.compile(r"([\\`*_{}\[\]<>#|~$&])")
_LINE_START = re.compile(r"^(\s*)(\d+\.|[-+=])")  # a list item or a heading underline at the start
# Emoji and icon shortcodes (`:smile:`, `:material/home:`) and GFM's bare links (`https://…`, `www.…`, `a@b.org`) are found in the text after
# the escapes are gone, so a backslash cannot stop them: an invisible word joiner breaks their pattern instead.
_JOIN = "\u2060"
_BREAKS = [(re.compile(r":(?=[A-Za-z0-9_+/\-]+:)"), ":" + _JOIN), (re.compile(r":(?=[A-Za-z-]+\[)"), ":" + _JOIN), (re.compile(r"://"), ":" + _JOIN + "//"),
           (re.compile(r"(?i)\b(www)\."), r"\1" + _JOIN + "."), (re.compile(r"(?<=\w)@"), _JOIN + "@")]


def literal(text: object) -> str:
    """`text` as Markdown that renders to `text` (on one line: newlines become spaces), with an invisible word
    joiner (U+2060) inside emoji shortcodes, URLs and e-mail addresses so that they stay plain text."""
    s = " ".join(str(text).splitlines())
    for pattern, repl in _BREAKS:
        s = pattern.sub(repl, s)
    s = _PUNCT.sub(r"\\\1", s)
    return _LINE_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], s)


def bold(text: object) -> str:
    """User text in bold, still literal inside."""
    return f"**{literal(text)}**"
