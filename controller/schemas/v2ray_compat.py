"""Seed 000's /api/v2ray shapes, exactly as seed 000 defines them (an "instance" is a node)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from controller.schemas.nodes import NodeStatus


class CompatRegion(BaseModel):
    region: str
    name: str


class InstanceCreate(BaseModel):
    """Seed 000 takes only the region (other keys are ignored, as seed 000 does)."""

    region: str = Field(min_length=1, max_length=64)


class InstanceCreated(BaseModel):
    uuid: str
    status: NodeStatus


class Instance(BaseModel):
    id: int
    uuid: str
    ec2_id: str = Field(description="the machine's id; empty until it exists")
    ec2_region: str
    ec2_region_name: str
    ec2_public_ip: str = Field(description="empty until the machine has one")
    status: NodeStatus
    created_at: str = Field(description='"2024-01-01 00:00:00" (UTC)')
    updated_at: str = Field(description='"2024-01-01 00:00:00" (UTC)')


class InstanceDeleted(BaseModel):
    status: str = Field(description='always "deleting"')
