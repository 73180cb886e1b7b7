"""FrontDesk: a self-hosted AI front desk for websites.

The package is served by one ASGI app (`frontdesk.main.create_app`) and driven by one CLI
(`frontdesk.cli`). Everything a site owner, an operator or an integrator touches is described in
the public contract (docs/protocol.md); this package implements it.
"""

__version__ = "0.1.0"
