"""The domain: the pure rules of charging sessions.

Stitching meter events into sessions (stitcher, readings, reorder, state, rules), session
IDs, tariffs and pricing, CDRs, anomalies, connector status and station health, and the
station registry. Plain Python over plain data: it imports only the contract (`schemas/`),
and no engine (Faust, Kafka or ClickHouse clients); tests/unit/test_layers.py and
test_purity.py hold it to that.
"""
