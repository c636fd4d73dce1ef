"""With a token set, every page and every action needs a signed-in browser (``lifecycle.api.session``).

The page script stops at the gate with a link to the sign-in form, so an unknown browser sees
no chips and gets no widgets to act with; button callbacks, which Streamlit runs before the
script, check again and do nothing without a session.
"""

from __future__ import annotations

import streamlit as st

from lifecycle.api.session import LOGIN_PATH, LOGOUT_PATH, session_valid
from service_access import get_service


def signed_in() -> bool:
    return session_valid(get_service().settings.api_token, st.context.cookies)


def require_session() -> None:
    """End this script run unless the browser is signed in (or no token is set)."""
    if signed_in():
        return
    st.info("This app is protected by a token (DXG_API_TOKEN).", icon=":material/lock:")
    # Plain markdown links open a new tab; sign-in belongs in this one.
    st.markdown(_same_tab_link(LOGIN_PATH, "Sign in"), unsafe_allow_html=True)
    st.caption("Enter the token once; this browser then stays signed in.")
    st.stop()


def sign_out_link() -> None:
    """A way out for a signed-in browser; nothing when no token is set."""
    if get_service().settings.api_token is not None:
        st.markdown(_same_tab_link(LOGOUT_PATH, "Sign out"), unsafe_allow_html=True)


def _same_tab_link(path: str, text: str) -> str:
    # Both are constants of ours, never user input.
    return f'<a href="{path}" target="_self">{text}</a>'
