-- wrk script: prints one JSON line with throughput and latency percentiles at the end.
-- The label comes from the environment variable BENCH_LABEL.
local label = os.getenv("BENCH_LABEL") or ""

function done(summary, latency, requests)
  local errors = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"label":"%s","requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,' ..
    '"p99_ms":%.3f,"errors":%d,"non_2xx":%d}\n',
    label, summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
