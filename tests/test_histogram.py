"""agentp2p.histogram: fixed buckets in Prometheus's shape (cumulative, ``le``, +Inf last)."""

from __future__ import annotations

import math

import pytest

from agentp2p.histogram import Histogram, buckets_from_dict


def test_samples_land_in_the_first_bucket_whose_bound_they_do_not_exceed() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0, float("nan")):
        h.observe(v)
    assert h.cumulative() == [(0.1, 2), (1.0, 4), (math.inf, 5)]  # le: 0.1 counts in the 0.1 bucket; NaN ignored
    assert h.count == 5 and h.sum == pytest.approx(8.65)


def test_the_json_form_round_trips() -> None:
    h = Histogram()
    h.observe(0.003)
    h.observe(42.0)
    data = h.as_dict()
    assert list(data["buckets"])[-1] == "+Inf"
    assert buckets_from_dict(data) == h.cumulative()


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0), (1.0, math.inf)])
def test_bounds_must_be_finite_and_increasing(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        Histogram(bounds)
