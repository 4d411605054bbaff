"""The vpnfleet controller: REST API, agent hub (gRPC), cloud providers and the fleet database."""

__version__ = "0.1.0"
