"""``multiworld view``: a local web page to look inside a world-state store.

:class:`~multiworld.viewer.api.Viewer` answers the page's questions about one store (JSON and
PNG, every id and step validated); :mod:`multiworld.viewer.server` serves it and the page
(``static/``: plain HTML, JS and CSS, no build step) over the standard library's HTTP server.
"""

from multiworld.viewer.api import ApiError, Viewer
from multiworld.viewer.server import ViewerServer, make_server

__all__ = ["ApiError", "Viewer", "ViewerServer", "make_server"]
