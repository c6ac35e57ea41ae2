-- wrk script: POST generic push events to `imagehook serve`, each with an id and a digest no
-- other request uses (thread id + counter), so every request records a new event and a new
-- image instead of a duplicate (or one image collecting thousands of tags). An optional number
-- after `--` (wrk ... -s serve-load.lua URL -- 7) keeps consecutive runs against one server apart.
local counter = 0
local run = 0
-- A global, so that setup()'s thread:set() reaches it (a local here would shadow it, and
-- every thread would send the same ids).
thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  run = tonumber(args[1] or "0") or 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"image":"registry.example.com/shop/api:%d.%d.%d","digest":"sha256:%016x%016x%032x","id":"load-%d-%d-%d"}',
    run, thread_id, counter, thread_id, counter, run, run, thread_id, counter)
  return wrk.format("POST", "/push", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rps": %.0f, "p50_ms": %.3f, "p99_ms": %.3f, "errors": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
