"""The server's Prometheus metrics (GET /metrics): requests by status, tokens generated,
requests cancelled, the queue and the batch, time to first token and latency.

    metrics = Metrics(engine)        # a batching.Engine: counts its tokens as they come
    metrics.requests.labels('200').inc()
"""

import prometheus_client as prom


class Metrics:
    """What /metrics shows, in a registry of its own."""

    def __init__(self, engine):
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter('gpt2_http_requests', 'HTTP requests answered, by '
                                     'status', ['status'], registry=r)
        self.tokens = prom.Counter('gpt2_generated_tokens', 'Tokens generated', registry=r)
        self.cancelled = prom.Counter('gpt2_cancelled_requests', 'Requests whose client went '
                                      'away before their last token', registry=r)
        prom.Gauge('gpt2_queue_length', 'Requests waiting for rows in the batch',
                   registry=r).set_function(engine.queued)
        prom.Gauge('gpt2_batch_rows', 'Rows in the running batch',
                   registry=r).set_function(engine.rows)
        self.first_token = prom.Histogram('gpt2_time_to_first_token_seconds', 'From a '
                                          'request to its first token', registry=r)
        self.latency = prom.Histogram('gpt2_request_latency_seconds', 'From a request to '
                                      'its last token', registry=r)
        engine.on_tokens = self.tokens.inc

    def exposition(self):
        """(body, content type) of /metrics, in Prometheus' text format."""
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
