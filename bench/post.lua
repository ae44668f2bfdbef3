-- wrk script of bench/run: every request is a client credentials token
-- request (form body, HTTP Basic client authentication).
--
-- Environment:
--   BENCH_AUTH     base64 of "client_id:client_secret" (required)
--   BENCH_RATE     requests per second for the whole run; unset or 0 means
--                  as fast as the connections go (plain wrk)
--   BENCH_THREADS  wrk's -t, needed with BENCH_RATE to split the rate
--
-- done() prints one machine-readable line for bench/run:
--   WRKRESULT <requests> <seconds> <req/s> <p50 µs> <p99 µs> <non-2xx> <socket errors>

wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. assert(os.getenv("BENCH_AUTH"), "BENCH_AUTH is not set")

local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0

if rate > 0 then
  -- Plain wrk has no rate option (wrk2 is not in Debian). Each thread keeps
  -- a schedule of send times, rate/threads per second, and delay() holds a
  -- connection's next request until the next free slot. A slot that has
  -- passed is dropped rather than caught up, so the rate is an upper
  -- bound; latency is timed from the actual send, as wrk always does.
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]]
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local threads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
  local interval = 1000 * threads / rate
  local next_slot = nil

  function delay()
    local now = now_ms()
    if next_slot == nil or next_slot < now then
      next_slot = now
    end
    local wait = next_slot - now
    next_slot = next_slot + interval
    return math.floor(wait + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("WRKRESULT %d %.3f %.1f %d %d %d %d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
