from tritonfleet.gateway.http.cluster import merge_index, merge_stats


def test_index_lists_each_model_version_once_ready_if_any_node_has_it_ready() -> None:
    node_a = [
        {"name": "simple", "version": "1", "state": "READY"},
        {"name": "b", "version": "1", "state": "UNAVAILABLE", "reason": "x"},
    ]
    node_b = [
        {"name": "simple", "version": "1", "state": "READY"},
        {"name": "b", "version": "1", "state": "READY"},
    ]
    assert merge_index([node_a, node_b]) == [
        {"name": "b", "version": "1", "state": "READY"},
        {"name": "simple", "version": "1", "state": "READY"},
    ]


def _stats(count: int, ns: int, last: int) -> dict:
    return {
        "model_stats": [
            {
                "name": "simple",
                "version": "1",
                "last_inference": last,
                "inference_count": count,
                "execution_count": count,
                "inference_stats": {"success": {"count": count, "ns": ns}, "fail": {"count": 0, "ns": 0}},
                "response_stats": {},
                "batch_stats": [{"batch_size": 1, "compute_infer": {"count": count, "ns": ns}}],
                "memory_usage": [],
            }
        ]
    }


def test_statistics_add_up_over_nodes_and_keep_the_latest_inference() -> None:
    merged = merge_stats([_stats(3, 30, 5), _stats(4, 40, 9)])["model_stats"][0]
    assert merged["inference_count"] == 7
    assert merged["execution_count"] == 7
    assert merged["last_inference"] == 9
    assert merged["inference_stats"]["success"] == {"count": 7, "ns": 70}
    assert merged["batch_stats"] == [{"batch_size": 1, "compute_infer": {"count": 7, "ns": 70}}]


def test_merging_does_not_modify_the_nodes_answers() -> None:
    first = _stats(1, 10, 1)
    merge_stats([first, _stats(1, 10, 1)])
    assert first["model_stats"][0]["inference_count"] == 1
