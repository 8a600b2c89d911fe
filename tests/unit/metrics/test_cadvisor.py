"""cAdvisor's container families (``CgroupCollector``) over fake readers, and
the CRI's metric descriptors: the same names as the endpoint's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hawser.cri import metrics as cri_metrics
from hawser.host import CgroupStats
from hawser.metadata import Container
from hawser.metrics import CgroupCollector, CgroupSource, new_metrics
from hawser.pods import CGROUP_FAMILIES, LABEL_SANDBOX_ID, NETWORK_FAMILIES, InterfaceUsage, PodStats, Sandbox

Key = tuple[str, frozenset[tuple[str, str]]]


def stats(*, cpu_ns: int = 2_500_000_000, working_set: int = 30 << 20, oom: int = 0) -> CgroupStats:
    return CgroupStats(timestamp_ns=1, cpu_usage_ns=cpu_ns, cpu_user_ns=0, cpu_system_ns=0,
                       memory_usage=working_set + 5, memory_working_set=working_set, memory_limit=None,
                       memory_rss=working_set - 7, memory_cache=0, pids_current=3, pids_limit=None,
                       blkio_read_bytes=4096, blkio_write_bytes=8192, oom_kills=oom)


def sandbox(id_: str = "p1", name: str = "web", namespace: str = "shop", cgroup: str = "/kube/pod1",
            netns: str | None = "/run/netns/x") -> Sandbox:
    return Sandbox(id=id_, name=name, namespace=namespace, uid="u", attempt=0, state="ready", created_at=0.0,
                   cgroup_parent=cgroup, netns=netns)


def container(id_: str, name: str, pod: str = "p1", cgroup: str = "/kube/pod1/c1") -> Container:
    return Container(namespace="k8s.io", id=id_, name=f"rec-{id_}", image="busybox@sha256:ab", image_id="sha256:ab",
                     snapshotter="overlayfs", snapshot_key=id_,
                     config={"cri.metadata": {"name": name, "attempt": 0}, "cri.image": "busybox:1",
                             "cgroups_path": cgroup},
                     labels={LABEL_SANDBOX_ID: pod}, created_at=0.0)


class Fake:
    """Containers and pods with canned samples; counts the reads."""

    def __init__(self) -> None:
        self.pods = [sandbox()]
        self.containers = [container("c1", "app"), container("c2", "gone", cgroup="/kube/pod1/c2")]
        self.samples: dict[str, CgroupStats | None] = {"c1": stats(), "c2": None}
        self.reads: list[str] = []

    def source(self) -> CgroupSource:
        def read_container(record: Container) -> CgroupStats | None:
            self.reads.append(record.id)
            return self.samples[record.id]

        def read_pod(pod: Sandbox) -> PodStats:
            self.reads.append(pod.id)
            return PodStats(sandbox=pod, timestamp_ns=1, cgroup=stats(cpu_ns=4_000_000_000, working_set=40 << 20),
                            interfaces=(InterfaceUsage("eth0", rx_bytes=100, rx_errors=1, tx_bytes=200, tx_errors=2),))

        return CgroupSource(containers=lambda: self.containers, pods=lambda: self.pods, read_container=read_container,
                            read_pod=read_pod)


def scrape(registry: CollectorRegistry) -> dict[Key, float]:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


def registry_of(fake: Fake) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CgroupCollector(fake.source()))
    return registry


APP = {"namespace": "shop", "pod": "web", "container": "app", "image": "busybox:1", "id": "/kube/pod1/c1"}
POD = {"namespace": "shop", "pod": "web", "container": "", "image": "", "id": "/kube/pod1"}


def test_a_container_has_cadvisors_families_and_labels() -> None:
    got = scrape(registry_of(Fake()))
    assert got[key("container_cpu_usage_seconds_total", **APP)] == 2.5
    assert got[key("container_memory_working_set_bytes", **APP)] == 30 << 20
    assert got[key("container_memory_usage_bytes", **APP)] == (30 << 20) + 5
    assert got[key("container_memory_rss", **APP)] == (30 << 20) - 7
    assert got[key("container_oom_events_total", **APP)] == 0
    assert got[key("container_processes", **APP)] == 3
    assert got[key("container_fs_reads_bytes_total", **APP)] == 4096
    assert got[key("container_fs_writes_bytes_total", **APP)] == 8192


def test_the_pod_is_container_empty_and_its_network_container_pod() -> None:
    got = scrape(registry_of(Fake()))
    assert got[key("container_cpu_usage_seconds_total", **POD)] == 4.0
    assert got[key("container_memory_working_set_bytes", **POD)] == 40 << 20
    net = {**POD, "container": "POD", "interface": "eth0"}
    assert got[key("container_network_receive_bytes_total", **net)] == 100
    assert got[key("container_network_receive_errors_total", **net)] == 1
    assert got[key("container_network_transmit_bytes_total", **net)] == 200
    assert got[key("container_network_transmit_errors_total", **net)] == 2


def test_a_container_without_a_cgroup_has_no_series() -> None:
    got = scrape(registry_of(Fake()))
    assert not [k for k in got if dict(k[1]).get("container") == "gone"]


def test_one_read_per_container_and_pod_per_scrape_and_none_at_registration() -> None:
    fake = Fake()
    registry = registry_of(fake)
    assert fake.reads == []
    scrape(registry)
    assert sorted(fake.reads) == ["c1", "c2", "p1"]


def test_a_pod_without_cgroup_or_network_reports_only_its_containers() -> None:
    fake = Fake()
    source = fake.source()
    bare = CgroupSource(containers=source.containers, pods=source.pods, read_container=source.read_container,
                        read_pod=lambda pod: PodStats(sandbox=pod, timestamp_ns=1))
    registry = CollectorRegistry()
    registry.register(CgroupCollector(bare))
    got = scrape(registry)
    assert {dict(k[1])["container"] for k in got} == {"app"}


def test_a_container_whose_pod_is_gone_keeps_its_own_labels() -> None:
    fake = Fake()
    fake.pods = []
    got = scrape(registry_of(fake))
    assert got[key("container_processes", **{**APP, "namespace": "", "pod": ""})] == 3


def test_no_containers_no_samples_but_the_families_are_declared() -> None:
    fake = Fake()
    fake.pods, fake.containers = [], []
    text = generate_latest(registry_of(fake)).decode()
    assert "# TYPE container_memory_working_set_bytes gauge" in text
    assert "# TYPE container_cpu_usage_seconds_total counter" in text


def test_new_metrics_registers_the_collector_when_given_a_source() -> None:
    fake = Fake()
    with_cgroups = new_metrics("1.0", containers=lambda: [], pods=lambda: [], cgroups=fake.source())
    assert key("container_processes", **APP) in scrape(with_cgroups.registry)
    without = new_metrics("1.0", containers=lambda: [], pods=lambda: [])
    assert not [k for k in scrape(without.registry) if k[0].startswith("container_")]


def test_the_cri_descriptors_are_the_endpoints_families() -> None:
    endpoint = {(f.name, f.help) for f in (*CGROUP_FAMILIES, *NETWORK_FAMILIES)}
    cri = {(d.name, d.help) for d in cri_metrics.descriptors()}
    assert cri == endpoint
    labels = {d.name: list(d.label_keys) for d in cri_metrics.descriptors()}
    assert labels["container_memory_working_set_bytes"] == ["container", "id", "image", "namespace", "pod"]
    assert labels["container_network_receive_bytes_total"][-1] == "interface"
    kinds = {f.name: f.kind for f in CGROUP_FAMILIES}
    assert {f.name for f in CGROUP_FAMILIES if cri_metrics.metric_type(f) == cri_metrics.api_pb2.COUNTER} == {
        name for name, kind in kinds.items() if kind == "counter"}
