"""What the replicated scenarios (failover, stale_reads) share: the replication link
through the lab's proxy."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from experiments.faults.replication import ReplicationLinks

if TYPE_CHECKING:
    from coupon_core.cluster import ReplicatedCluster as Cluster
    from experiments.pipeline import Nemesis

__all__ = ["link_through"]


def link_through(
    links: list[ReplicationLinks],
) -> Callable[[str, Cluster | None, int], tuple[str, Nemesis]]:
    """A pipeline ``through``: the cluster's replication link runs through the lab's proxy
    (appended to ``links`` for the faults to act on); the service's URL is unchanged."""

    def through(url: str, cluster: Cluster | None, seed: int) -> tuple[str, Nemesis]:
        assert cluster is not None
        link = ReplicationLinks(cluster, seed=seed).start()
        links.append(link)
        return url, link

    return through
