-- wrk script for tests/bench/bench.py: one fixed POST, optionally paced to a fixed total
-- rate, and a one-line JSON summary at the end.
--
-- Environment: BENCH_METHOD, BENCH_PATH, BENCH_BODY, BENCH_TOKEN (Bearer, optional),
-- BENCH_RATE (requests/s over all threads; 0 or unset: as fast as possible),
-- BENCH_THREADS (wrk's -t, to split the rate), BENCH_STATUSES (1: count the answers by
-- status, which costs wrk a Lua call per answer; wrk itself counts only statuses >= 400).
--
-- Pacing: every thread keeps a schedule of send times spaced threads/rate apart and each
-- request takes the next slot; delay() waits until that slot (wrk's timers have 1 ms
-- granularity, so a send may go up to 1 ms early; the slots keep the average rate). A
-- request whose slot has passed goes at once, so an overloaded server gets fewer requests
-- than offered: the achieved rate is reported next to the offered one. Latency is wrk's,
-- from the first byte written to the last byte read.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

wrk.method = os.getenv("BENCH_METHOD") or "POST"
wrk.path = os.getenv("BENCH_PATH") or "/"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
end

local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
local interval = 0
if rate > 0 then
    interval = nthreads * 1000.0 / rate -- ms between this thread's sends
end
local t0 = nil
local slot = 0

if interval > 0 then
    function delay()
        local now = now_ms()
        if t0 == nil then
            t0 = now
        end
        local due = t0 + slot * interval
        slot = slot + 1
        local wait = due - now
        if wait < 1 then
            return 0
        end
        return math.floor(wait)
    end
end

-- The answers by status: each thread counts its own (a global, so that done() can read it
-- from the thread with thread:get).
local threads = {}
if os.getenv("BENCH_STATUSES") == "1" then
    function setup(thread)
        table.insert(threads, thread)
    end

    function init(args)
        statuses = {}
    end

    function response(status, headers, body)
        statuses[status] = (statuses[status] or 0) + 1
    end
end

local function statuses_json()
    local total = {}
    for _, t in ipairs(threads) do
        for status, n in pairs(t:get("statuses") or {}) do
            total[status] = (total[status] or 0) + n
        end
    end
    local parts = {}
    for status, n in pairs(total) do
        table.insert(parts, string.format('"%d":%d', status, n))
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"statuses":%s,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
        summary.requests, summary.duration, summary.bytes, statuses_json(),
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.min, latency.mean, latency.max,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9)))
end
