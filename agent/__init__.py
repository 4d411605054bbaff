"""The vpnfleet agent: runs on every node, dials the controller, applies desired state, streams telemetry."""

__version__ = "0.1.0"
