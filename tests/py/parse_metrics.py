"""Prometheus's own Python parser (PyPI prometheus-client), not govledger's code,
reads a /metrics scrape from stdin and prints it as JSON:
{"families": {name: type}, "samples": [[name, {labels}, value], ...]}.
A scrape the parser rejects exits non-zero with its error."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families, samples = {}, []
for fam in text_string_to_metric_families(sys.stdin.read()):
    families[fam.name] = fam.type
    for s in fam.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"families": families, "samples": samples}))
