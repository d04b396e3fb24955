-- New sticky sessions at a fixed rate: every request carries an X-User
-- never seen before, and requests are paced to `rate` per second.
--
-- wrk has no pacing of its own, but it asks `delay()` (ms) before each
-- request of each connection. Every call takes the next slot of the
-- thread's schedule (start + n / rate) and waits until it; a connection
-- still busy when its slot came sends at once, so a short stall is caught
-- up. The clock is CLOCK_MONOTONIC through LuaJIT's ffi (wrk links
-- LuaJIT): os.time() counts whole seconds only.
--
-- Arguments after `--`: rate (requests/s for all threads together) and a
-- prefix for the keys (unique per run).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } peers_timespec;
  int clock_gettime(int clk_id, peers_timespec *tp);
]]
local ts = ffi.new("peers_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local next_id = 0

setup = function(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local per_thread_rate, prefix, start, slot, counter
init = function(args)
  local rate = tonumber(args[1] or "10000")
  local nthreads = tonumber(args[3] or "1")
  prefix = (args[2] or "u") .. "-" .. tostring(id) .. "-"
  per_thread_rate = rate / nthreads
  slot = 0
  counter = 0
end

delay = function()
  if start == nil then
    start = now_ms()
  end
  local due = start + slot * 1000 / per_thread_rate
  slot = slot + 1
  local wait = due - now_ms()
  if wait < 1 then
    return 0
  end
  return math.floor(wait)
end

request = function()
  counter = counter + 1
  return wrk.format("GET", "/hello", { ["X-User"] = prefix .. counter })
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"bytes":%d,"duration_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
