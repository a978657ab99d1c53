"""Request metrics: count and time every answered request by method, route template and status."""

from __future__ import annotations

from upload_service.observability import metrics


class RequestMetrics:
    """Observes requests into their Prometheus series, resolving each series once."""

    def __init__(self) -> None:
        # Resolving label values to a series costs a lock and a lookup; remember each series.
        self.series: dict[tuple[str, str, int], metrics.RequestSeries] = {}

    def record(self, method: str, route: str, status: int, duration_s: float) -> None:
        """Count one answered request."""
        # Any method a client invents shares one series, so the cache stays bounded.
        method = method if method in metrics.KNOWN_METHODS else "OTHER"
        key = (method, route, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = metrics.request_series(*key)
        series.observe(duration_s)
