"""Which versions of one model to load and which to retire: a pure function.

Loads are planned first and retires are planned again after the loads have run, so a
version that fails to load never displaces the one that serves.
"""

from dataclasses import dataclass

from ..settings import VersionPolicy
from .layout import Fingerprint


@dataclass(frozen=True)
class VersionView:
    fingerprint: Fingerprint
    stable: bool


@dataclass(frozen=True)
class Plan:
    load: tuple[int, ...]
    retire: tuple[int, ...]


def plan(
    present: dict[int, VersionView],
    served: dict[int, Fingerprint],
    failed: dict[int, Fingerprint],
    policy: VersionPolicy,
) -> Plan:
    """``served``: versions that are loaded, with the fingerprint they were loaded from.
    ``failed``: versions whose load failed, with the fingerprint that failed."""
    eligible = {
        version
        for version, view in present.items()
        if view.stable and failed.get(version) != view.fingerprint
    }
    still_present = {version for version in served if version in present}
    desired = set(policy.select(eligible | still_present))
    load = sorted(v for v in desired & eligible if served.get(v) != present[v].fingerprint)
    retire = sorted(v for v in served if v not in desired)
    return Plan(load=tuple(load), retire=tuple(retire))
