"""Shared infrastructure every stage may import: settings, Kafka client config, topic names,
metrics, errors, the wall clock. It imports the contract and the domain, never a stage."""
