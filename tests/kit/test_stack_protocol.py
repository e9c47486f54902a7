"""Both backends are the typed Stack the kit asks for (the container one also a ContainerStack), and
the conformance check finds a member a class lacks."""
from apiary_suite.cluster import Cluster
from apiary_suite.local import LocalCluster
from harness.stack.protocol import ContainerStack, Stack, missing


def test_the_compose_backend_is_a_container_stack():
    assert missing(Cluster, ContainerStack) == []


def test_the_local_backend_is_a_stack():
    assert missing(LocalCluster, Stack) == []


def test_a_class_without_a_member_is_caught():
    class Half:
        backend = "docker"

        def __init__(self):
            self.project, self.services = "p", []

        def inspect(self, service):
            return {}
    gaps = missing(Half, Stack)
    assert "topology" in gaps and "exec" in gaps and "heal" in gaps
    assert "inspect" not in gaps and "project" not in gaps and "services" not in gaps


def test_the_kits_compose_backend_is_a_container_stack_for_any_compose_file():
    from harness.stack.compose import ComposeStack
    assert missing(ComposeStack, ContainerStack) == []
