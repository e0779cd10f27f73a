"""The versioned model repository that MLServer discovers models through."""

from .repository import VersionedRepository

__all__ = ["VersionedRepository"]
