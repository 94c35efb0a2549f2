"""A real multi-node Ray cluster on this machine for the cluster tests (wirt.cluster.local): one
head and two worker nodes, each with fake capacities as its wirt resources and its own
WIRT_HOME. Started once per test module; VMs left running are stopped and the Ray processes
ended at teardown.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wirt.cluster.local import LocalCluster, NodeSpec, local_cluster

# different capacities, as the placement test asks
NODES = [NodeSpec("n0", 4, 2048, {"zone": "a"}), NodeSpec("n1", 2, 1024, {"zone": "a"}),
         NodeSpec("n2", 6, 3072, {"zone": "b"})]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(NODES, tmp_path_factory.mktemp("fleet")) as c:
        yield c
