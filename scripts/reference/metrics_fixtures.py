"""The metrics page fixture, parsed by an independent parser: PyPI `prometheus_client`.

Tests/ServerTests/Fixtures/metrics_page.prom is a page scraped from this server's /metrics after
MetricsTests' known request mix. This script parses it with prometheus_client's text-format parser
and writes every sample as [name, labels, repr(value)] to metrics_page.json, sorted; the value is a
string because Foundation's JSON reader on Linux does not round every decimal correctly. MetricsTests
checks that its own page parser (used on live scrapes, beside promtool) reads the same samples.
prometheus_client names a counter's sample with a `_total` suffix even where the page has none
(OpenMetrics style: axon_total_forward becomes axon_total_forward_total); the test allows for it.
Regenerate both:
  AXON_METRICS_PAGE_OUT=$PWD/Tests/ServerTests/Fixtures/metrics_page.prom \
      swift test --filter MetricsTests/testScrapeCountsEqualWhatWasSent
  "$(scripts/venv)" scripts/reference/metrics_fixtures.py
"""
import json
import pathlib

from prometheus_client.parser import text_string_to_metric_families

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "ServerTests" / "Fixtures"


def main():
    page = (FIXTURES / "metrics_page.prom").read_text(encoding="utf-8")
    samples = [[s.name, dict(s.labels), repr(float(s.value))]
               for family in text_string_to_metric_families(page) for s in family.samples]
    samples.sort(key=lambda s: (s[0], sorted(s[1].items())))
    text = "[\n" + ",\n".join(json.dumps(s, sort_keys=True) for s in samples) + "\n]\n"
    (FIXTURES / "metrics_page.json").write_text(text, encoding="utf-8")
    print(f"{len(samples)} samples")


if __name__ == "__main__":
    main()
