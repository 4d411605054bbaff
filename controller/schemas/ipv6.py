"""IPv6 prefix pools and allocations (seed 001's shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, Strict, ValidationError, ValidatorFunctionWrapHandler,
                      WrapValidator)

from controller.api import MAX_ID, BodyIntId, PageQuery

_Prefix = Annotated[str, Field(max_length=64, pattern=r"^[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}$",
                               description="CIDR, e.g. 2001:db8::/64")]
Bool = Annotated[bool, Strict()]
#: a count kept back is at most this (a pool holds at most 2**127 prefixes; seed 001 uses e.g. 100)
MAX_RESERVED_COUNT = MAX_ID
MAX_RESERVED_LIST = 256



def _one_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A union's failure as one error at the field itself (not one per member, named by pydantic's tags)."""
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(f"must be a count from 0 to {MAX_RESERVED_COUNT} or a list of at most "
                         f"{MAX_RESERVED_LIST} prefixes") from None


_Count = Annotated[int, Strict(), Field(ge=0, le=MAX_RESERVED_COUNT)]
#: a JSON number when it fits one exactly (2**53), else its decimal string (a /48 of /128s holds 2**80)
Count = int | str


class PoolBody(BaseModel):
    """A pool of prefixes to hand out."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
    prefix: _Prefix = Field(description="the pool, e.g. 2001:db8::/48")
    prefix_length: Annotated[int, Strict()] = Field(default=64, ge=1, le=128,
                                                    description="length of the prefixes it hands out")
    reserved_prefixes: Annotated[_Count | Annotated[list[_Prefix], Field(max_length=MAX_RESERVED_LIST)],
                                 WrapValidator(_one_error)] = Field(
        default_factory=list, description="a count kept back from the start of the pool, or a list of prefixes")
    description: str = Field(default="", max_length=1000)
    auto_assign: Bool = True


class AllocationBody(BaseModel):
    """The next free prefix of a pool, or ``custom_prefix`` (checked for overlap)."""

    model_config = ConfigDict(extra="forbid")
    pool_id: BodyIntId
    client_name: str = Field(default="", max_length=128)
    description: str = Field(default="", max_length=1000)
    auto_assign: Bool = True
    custom_prefix: _Prefix | None = None


class PoolQuery(PageQuery):
    search: str | None = Field(default=None, min_length=1, max_length=200, description="substring of the name")


class AllocationQuery(PageQuery):
    pool_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class AllocationOut(BaseModel):
    id: int
    pool_id: int
    client_name: str
    allocated_prefix: str
    status: Literal["active"]
    allocated_at: str = Field(description="ISO 8601, UTC")
    expires_at: None = Field(description="allocations do not expire")
    description: str


class PoolOut(BaseModel):
    id: int
    name: str
    prefix: str
    prefix_length: int
    total_prefixes: Count
    allocated_prefixes: Count
    reserved_prefixes: list[str] = Field(description="the prefixes kept back")
    available_prefixes: Count
    status: Literal["active"]
    description: str
    created_at: str
    updated_at: str
    allocations: list[AllocationOut]
