"""The dashboard: server-rendered pages (Jinja2, htmx, ECharts as static files), served
by ``ketch up`` at ``/`` on the API's own origin, under the same sign-in and access
checks, reading and writing only through the API as the caller
(:mod:`ketch.ui.api`). :mod:`ketch.ui.assembly` says how pages are added."""
