-- wrk script: POST sensor data, each request a new day (or one fixed body).
-- Environment: BENCH_VALUES (JSON array), BENCH_UNIT, BENCH_PRIOR (ISO datetime),
-- BENCH_DAY_BASE (epoch seconds of a UTC midnight), BENCH_DAY_STRIDE (days apart
-- the threads start); BENCH_FIXED_BODY instead posts that same body every time.
-- The summary (one JSON line) comes from the script named in BENCH_SUMMARY_LUA.
dofile(os.getenv("BENCH_SUMMARY_LUA"))

local fixed = os.getenv("BENCH_FIXED_BODY")
local values = os.getenv("BENCH_VALUES") or "[]"
local unit = os.getenv("BENCH_UNIT") or "MW"
local prior = os.getenv("BENCH_PRIOR") or ""
local base = tonumber(os.getenv("BENCH_DAY_BASE") or "0")
local stride = tonumber(os.getenv("BENCH_DAY_STRIDE") or "10000")
local threads = 0
local counter = 0

function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if fixed then
    wrk.body = fixed
  end
end

function request()
  if fixed then
    return wrk.format()
  end
  local day = (thread_number or 0) * stride + counter
  counter = counter + 1
  local start = os.date("!%Y-%m-%dT00:00:00+00:00", base + day * 86400)
  local body = '{"start":"' .. start .. '","duration":"PT24H","unit":"' .. unit ..
    '","prior":"' .. prior .. '","values":' .. values .. '}'
  return wrk.format(nil, nil, nil, body)
end
