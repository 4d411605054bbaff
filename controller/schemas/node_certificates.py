"""A node's certificate as the API shows it, and the one-time re-enrollment token."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class NodeCertificate(BaseModel):
    """What the controller knows of a node's current agent certificate."""

    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(description="the node's uuid (the certificate's common name)")
    enrolled: bool = Field(description="the node holds a certificate the controller issued")
    serial: str | None = Field(description="serial number of the current certificate, hex; null until a "
                                           "certificate issued before serials were recorded first connects")
    not_after: dt.datetime | None = Field(description="when the current certificate expires (the agent renews "
                                                      "it once a third of its lifetime is left)")
    issued_at: dt.datetime | None = Field(description="when the current certificate was issued")
    enrolled_at: dt.datetime | None = Field(description="when the node last enrolled")
    revoked_at: dt.datetime | None = Field(description="set: no certificate of the node is accepted until it "
                                                       "is re-enrolled")


class ReenrollmentToken(BaseModel):
    """A one-time enrollment token for the same node. Shown only in this answer (only its hash is stored)."""

    model_config = ConfigDict(extra="forbid")
    node_id: str
    enrollment_token: str = Field(description="hand it to the node's agent: `vpnfleet-agent --reenroll "
                                              "--token-file FILE` (or $VPNFLEET_ENROLLMENT_TOKEN); never on "
                                              "a command line")
    expires_at: dt.datetime = Field(description="the token is refused after this (enrollment.token_ttl)")
