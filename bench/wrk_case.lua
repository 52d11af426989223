-- One benchmark case for wrk: request shape from the environment, results as JSON.
--   BENCH_METHOD   GET or POST
--   BENCH_BODY     request body (optional; wrk adds Content-Length)
--   BENCH_HEADERS  "Name: value" lines separated by newlines
--   BENCH_OUT      path of the JSON summary written by done()
--   BENCH_PROOFS   file of DPoP proofs, one a line (optional): each request sends the next
--                  unused one as its DPoP header (threads take every n-th line)

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body ~= nil and body ~= "" then
  wrk.body = body
end
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name ~= nil then
    wrk.headers[name] = value
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
  thread:set("thread_count", #threads)
  for _, other in ipairs(threads) do
    other:set("thread_count", #threads)
  end
end

function init(args)
  non2xx = 0
  last_bad_status = 0
  local file = os.getenv("BENCH_PROOFS")
  if file ~= nil and file ~= "" then
    proofs, next_proof = {}, 1
    local index, count, line_number = thread_index or 1, thread_count or 1, 0
    for line in io.lines(file) do
      line_number = line_number + 1
      if (line_number - index) % count == 0 then
        table.insert(proofs, line)
      end
    end
  end
end

-- Defined only for DPoP cases: wrk builds every other case's request once, not per request.
if (os.getenv("BENCH_PROOFS") or "") ~= "" then
  function request()
    local headers = {}
    for name, value in pairs(wrk.headers) do
      headers[name] = value
    end
    -- past the end: the last proof again, a replay the server refuses (counted as non-2xx)
    headers["DPoP"] = proofs[math.min(next_proof, #proofs)]
    next_proof = next_proof + 1
    return wrk.format(nil, nil, headers)
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    last_bad_status = status
  end
end

function done(summary, latency, requests)
  local bad, bad_status = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    local status = thread:get("last_bad_status") or 0
    if status ~= 0 then bad_status = status end
  end
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "bad_status": %d, '
    .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
    .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, bad, bad_status,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
  out:close()
end
