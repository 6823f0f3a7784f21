"""Generated request ids: unique, 32 hex digits as before, and in the order they were made."""

from __future__ import annotations

import time

from tritonfleet.gateway.request_ids import new_request_id


def test_generated_ids_are_unique_hex_and_sort_by_time() -> None:
    ids = []
    for _ in range(5):
        ids += [new_request_id() for _ in range(200)]
        time.sleep(0.002)  # across milliseconds too, not only within one
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids == sorted(ids)
