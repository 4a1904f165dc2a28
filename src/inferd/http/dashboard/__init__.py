"""The live dashboard: ``/dashboard`` (a page, a script, a style sheet: static files in the
package, no build step) and ``/dashboard/state`` (its one JSON document, see state.py)."""

from inferd.http.dashboard.routes import router

__all__ = ["router"]
