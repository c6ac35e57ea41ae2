-- wrk script for scripts/load: a mix of valid, duplicate, wrongly authenticated and malformed
-- deliveries to `imagehook serve` (AUTH_MODE=token), every answer checked against what its
-- request should get.
--
--   wrk -t8 -c8 ... -s bench/mixed-load.lua URL -- <mode> <token> [dup_max]
--
-- mode "mixed": half of the requests are new pushes; "steady": no new pushes, only requests
-- that must record nothing (duplicates of the first `dup_max` pushes of each thread of an
-- earlier mixed run, bad tokens, malformed bodies), to see memory stay flat.
--
-- Run with as many connections as threads: one connection per thread has one request in flight
-- at a time, so `response` always answers the request `request` built last, and every answer
-- is matched to its class exactly. done() prints one JSON line with the counts.

local thread_list = {}

function setup(thread)
  thread:set("thread_id", #thread_list + 1)
  table.insert(thread_list, thread)
end

-- Per thread (each wrk thread has its own Lua state).
thread_id = 0
mode = "mixed"
token = ""
dup_max = 0
applied = 0     -- new pushes answered `applied`: ids load-<thread>-1 .. load-<thread>-<applied>
serial = 0      -- for the ids of requests that must not be recorded
awaiting = false
inflight_class = ""
inflight_id = ""
answered = 0
lost = 0        -- requests that never got an answer before the next one was sent
lost_valid = {} -- ids of new pushes among them (they may have been recorded)
counts = {}     -- counts["<class>|<answer>"] = n (flat: wrk 4.1's thread:get crashes on nested tables)
violations = 0
examples = {}   -- the first few unexpected answers

local EXPECTED = {
  valid = "200 applied",
  duplicate = "200 duplicate",
  bad_token = "401 unauthorized",
  no_token = "401 unauthorized",
  invalid_json = "400 invalid_json",
  nested_json = "400 invalid_json",
  unknown_format = "400 unknown_format",
  invalid_reference = "422 invalid_reference",
}

-- Weights out of 100, in a fixed order so every thread draws the same mix.
local MIXES = {
  mixed = {
    {"valid", 50}, {"duplicate", 20}, {"bad_token", 6}, {"no_token", 4}, {"invalid_json", 5},
    {"nested_json", 3}, {"unknown_format", 5}, {"invalid_reference", 7},
  },
  steady = {
    {"duplicate", 40}, {"bad_token", 12}, {"no_token", 8}, {"invalid_json", 10},
    {"nested_json", 5}, {"unknown_format", 10}, {"invalid_reference", 15},
  },
}

local NESTED = string.rep("[", 200) .. string.rep("]", 200)

local headers_ok, headers_bad, headers_none

function init(args)
  mode = args[1] or "mixed"
  token = args[2] or ""
  dup_max = tonumber(args[3] or "0") or 0
  math.randomseed(thread_id * 7919 + (mode == "steady" and 1 or 0))
  headers_ok = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  headers_bad = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer not-" .. token}
  headers_none = {["Content-Type"] = "application/json"}
end

-- The n-th new push of thread t: the same bytes whenever it is sent again.
local function push_body(t, n)
  return string.format(
    '{"image":"registry.example.com/shop/api:1.%d.%d","digest":"sha256:%08x%056x","id":"load-%d-%d"}',
    t, n, t, n, t, n)
end

local function pick()
  local roll = math.random(100)
  for _, cw in ipairs(MIXES[mode]) do
    roll = roll - cw[2]
    if roll <= 0 then return cw[1] end
  end
  return "valid"
end

function request()
  -- wrk calls the first thread's request() once before any connection, to see how many
  -- requests it returns: that one is never sent. Any other request left without an answer is
  -- lost (and wrk counts a socket error for it too).
  if awaiting and answered > 0 then
    lost = lost + 1
    if inflight_class == "valid" then table.insert(lost_valid, inflight_id) end
  end
  local class = pick()
  local dup_pool = mode == "steady" and dup_max or applied
  if class == "duplicate" and dup_pool == 0 then
    class = mode == "steady" and "bad_token" or "valid"
  end
  serial = serial + 1
  local headers, body, id = headers_ok, nil, ""
  if class == "valid" then
    local n = applied + 1
    id = string.format("load-%d-%d", thread_id, n)
    body = push_body(thread_id, n)
  elseif class == "duplicate" then
    local n = math.random(dup_pool)
    id = string.format("load-%d-%d", thread_id, n)
    body = push_body(thread_id, n)
  elseif class == "bad_token" or class == "no_token" then
    -- A well-formed push of a digest no valid request uses: it must never be recorded.
    headers = class == "bad_token" and headers_bad or headers_none
    body = string.format(
      '{"image":"registry.example.com/shop/api:9.%d.%d","digest":"sha256:ffffffff%08x%048x","id":"bad-%s-%d-%d"}',
      thread_id, serial, thread_id, serial, mode, thread_id, serial)
  elseif class == "invalid_json" then
    body = string.format('{"image":"registry.example.com/shop/api:1.0.0","id":"json-%d-%d"', thread_id, serial)
  elseif class == "nested_json" then
    body = NESTED
  elseif class == "unknown_format" then
    body = string.format('{"hello":"world","id":"unknown-%d-%d"}', thread_id, serial)
  else -- invalid_reference: upper case is not allowed in a repository name
    body = string.format('{"image":"registry.example.com/Shop/API:1.0.0","id":"ref-%s-%d-%d"}', mode, thread_id, serial)
  end
  awaiting, inflight_class, inflight_id = true, class, id
  return wrk.format("POST", "/push", headers, body)
end

local function note(answer, body)
  violations = violations + 1
  if #examples < 5 then
    table.insert(examples, string.format("%s (id %s) got %s: %s", inflight_class, inflight_id,
      answer, string.sub(body or "", 1, 200)))
  end
end

function response(status, headers, body)
  local answer
  if status == 200 then
    -- The event's own "outcome": the first one once its deployments (each with an outcome of
    -- its own) are cut out, whatever order the keys come in.
    local event = string.gsub(body, '"deployments":%b[]', "")
    local outcome = string.match(event, '"outcome":"(%a+)"') or "none"
    answer = "200 " .. outcome
    local id = string.match(body, '"id":"(load%-[%d%-]+)"')
    if answer == EXPECTED[inflight_class] and id ~= inflight_id then
      note(answer .. " for id " .. tostring(id), body)
    end
  else
    answer = status .. " " .. (string.match(body, '"error":"([%a_]+)"') or "?")
  end
  local key = inflight_class .. "|" .. answer
  counts[key] = (counts[key] or 0) + 1
  if answer ~= EXPECTED[inflight_class] then
    note(answer, body)
  elseif inflight_class == "valid" then
    applied = applied + 1
  end
  awaiting = false
  answered = answered + 1
end

local function json_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(ch) return string.format("\\u%04x", string.byte(ch)) end) .. '"'
end

function done(summary, latency, requests)
  local classes, threads_out, all_examples = {}, {}, {}
  local total_violations, total_lost = 0, 0
  for _, t in ipairs(thread_list) do
    for key, n in pairs(t:get("counts")) do
      local class, answer = string.match(key, "^([^|]+)|(.*)$")
      classes[class] = classes[class] or {}
      classes[class][answer] = (classes[class][answer] or 0) + n
    end
    total_violations = total_violations + t:get("violations")
    total_lost = total_lost + t:get("lost")
    for _, e in ipairs(t:get("examples")) do table.insert(all_examples, json_string(e)) end
    local lv = {}
    for _, id in ipairs(t:get("lost_valid")) do table.insert(lv, json_string(id)) end
    local pending = t:get("awaiting") and t:get("inflight_class") == "valid"
    if pending then table.insert(lv, json_string(t:get("inflight_id"))) end
    table.insert(threads_out, string.format(
      '{"thread": %d, "applied": %d, "unanswered_valid": [%s], "unanswered": %d}',
      t:get("thread_id"), t:get("applied"), table.concat(lv, ", "),
      t:get("lost") + (t:get("awaiting") and 1 or 0)))
  end
  local class_out = {}
  for class, answers in pairs(classes) do
    local parts = {}
    for answer, n in pairs(answers) do table.insert(parts, string.format("%s: %d", json_string(answer), n)) end
    table.insert(class_out, string.format('%s: {%s}', json_string(class), table.concat(parts, ", ")))
  end
  local expected = {}
  for class, answer in pairs(EXPECTED) do
    table.insert(expected, string.format("%s: %s", json_string(class), json_string(answer)))
  end
  local e = summary.errors
  io.write(string.format(
    '{"mode": %s, "requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "violations": %d, "lost": %d, ' ..
    '"classes": {%s}, "expected": {%s}, "threads": [%s], "examples": [%s]}\n',
    json_string(thread_list[1]:get("mode")), summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.timeout, total_violations, total_lost,
    table.concat(class_out, ", "), table.concat(expected, ", "), table.concat(threads_out, ", "),
    table.concat(all_examples, ", ")))
end
