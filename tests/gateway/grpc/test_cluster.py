from tritonclient.grpc import service_pb2

from tritonfleet.gateway.grpc.cluster import merge_index, merge_statistics


def node_stats(count: int, last: int, batch_ns: int, response_ns: int) -> bytes:
    stats = service_pb2.ModelStatistics(
        name="simple", version="1", last_inference=last, inference_count=count, execution_count=count
    )
    stats.inference_stats.success.count = count
    stats.inference_stats.success.ns = count * 1000
    batch = stats.batch_stats.add(batch_size=1)
    batch.compute_infer.count, batch.compute_infer.ns = count, batch_ns
    stats.response_stats["0"].success.count = count
    stats.response_stats["0"].success.ns = response_ns
    stats.memory_usage.add(type="CPU", id=0, byte_size=64)
    return service_pb2.ModelStatisticsResponse(model_stats=[stats]).SerializeToString()


def test_statistics_are_summed_over_nodes_and_the_latest_inference_wins() -> None:
    merged = service_pb2.ModelStatisticsResponse.FromString(
        merge_statistics([node_stats(3, 100, 30, 7), node_stats(5, 250, 50, 9)])
    )
    (stats,) = merged.model_stats
    assert (stats.name, stats.version) == ("simple", "1")
    assert (stats.inference_count, stats.execution_count, stats.last_inference) == (8, 8, 250)
    assert (stats.inference_stats.success.count, stats.inference_stats.success.ns) == (8, 8000)
    assert [(b.batch_size, b.compute_infer.count, b.compute_infer.ns) for b in stats.batch_stats] == [
        (1, 8, 80)
    ]
    assert (stats.response_stats["0"].success.count, stats.response_stats["0"].success.ns) == (8, 16)
    assert len(stats.memory_usage) == 2, "each node's own memory"


def test_statistics_of_different_batch_sizes_and_models_stay_apart() -> None:
    other = service_pb2.ModelStatistics(name="digits", version="1", inference_count=2)
    other.batch_stats.add(batch_size=4).compute_infer.count = 2
    merged = service_pb2.ModelStatisticsResponse.FromString(
        merge_statistics(
            [
                node_stats(1, 1, 1, 1),
                service_pb2.ModelStatisticsResponse(model_stats=[other]).SerializeToString(),
            ]
        )
    )
    assert [(s.name, s.inference_count) for s in merged.model_stats] == [("digits", 2), ("simple", 1)]


def index(*entries: tuple[str, str]) -> bytes:
    models = [
        service_pb2.RepositoryIndexResponse.ModelIndex(name="simple", version=v, state=s) for v, s in entries
    ]
    return service_pb2.RepositoryIndexResponse(models=models).SerializeToString()


def test_the_index_has_each_version_once_ready_when_any_node_has_it_ready() -> None:
    merged = service_pb2.RepositoryIndexResponse.FromString(
        merge_index([index(("1", "UNAVAILABLE"), ("2", "READY")), index(("1", "READY"))])
    )
    assert [(m.version, m.state) for m in merged.models] == [("1", "READY"), ("2", "READY")]
