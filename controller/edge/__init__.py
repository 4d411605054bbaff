"""The HTTP edge: what every request passes through before and after its route.

Order (outermost first, see ``controller.app.create_app``): request id, input guards, authentication, the
audit log. Errors are turned into responses in one place, ``controller.edge.errors``.
"""
