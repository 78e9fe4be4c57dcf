"""Publishes a backend's :class:`~receiver.itsm.base.BackendCounters` on a Prometheus registry.

Imported only by a receiver that serves metrics (``create_app``), so a backend never needs
``prometheus_client`` to run.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from receiver.itsm.base import BackendCounters


class BackendCountersCollector(Collector):
    """A ``prometheus_client`` custom collector: the backend's families, built at scrape time."""

    def __init__(self, source: BackendCounters) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """One counter or gauge family per :class:`~receiver.itsm.base.MetricFamily`, samples sorted."""
        for family in self._source.metric_families():
            metric: CounterMetricFamily | GaugeMetricFamily
            if family.kind == "gauge":
                metric = GaugeMetricFamily(family.name, family.documentation, labels=list(family.labels))
            else:
                metric = CounterMetricFamily(family.name, family.documentation, labels=list(family.labels))
            for values, value in sorted(family.samples.items()):
                metric.add_metric(list(values), value)
            yield metric


def register_counters(registry: CollectorRegistry, source: BackendCounters) -> None:
    """Publish ``source``'s metric families on ``registry`` (read at scrape time)."""
    registry.register(BackendCountersCollector(source))
