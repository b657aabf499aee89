-- wrk script for bench/bench.py. Environment:
--   BENCH_PATH    the request path
--   BENCH_TOKENS  a file of tokens, one a line, sent as "Authorization: Bearer" in turn (cycling);
--                 empty or unset: no Authorization header
-- done() prints one line "BENCH_RESULT {json}" that bench.py reads.

local path = os.getenv("BENCH_PATH") or "/"
local token_file = os.getenv("BENCH_TOKENS") or ""
-- BENCH_DPOP_TOKEN  a DPoP-bound token: then each line of BENCH_TOKENS is a proof, each sent once
--                   with "Authorization: DPoP <token>" (a proof is good once: a replay is a non-2xx);
--                   "pairs": each line is "<token> <proof>" instead (proofs of several clients)
local dpop_token = os.getenv("BENCH_DPOP_TOKEN") or ""
-- BENCH_METHOD  the method (GET unless set); BENCH_BODY a file whose text is every request's body
--               (sent as JSON, as an MCP client's POST is)
local method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY") or ""
local body = nil
if body_file ~= "" then
  local f = io.open(body_file, "rb")
  body = f:read("*a")
  f:close()
end
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- Every request is formatted up front, so request() costs wrk next to nothing.
  reqs = {}
  if token_file ~= "" then
    for line in io.lines(token_file) do
      if line ~= "" and dpop_token == "pairs" then
        local bound, proof = line:match("^(%S+) (%S+)$")
        reqs[#reqs + 1] = wrk.format("GET", path, { ["Authorization"] = "DPoP " .. bound, ["DPoP"] = proof })
      elseif line ~= "" and dpop_token ~= "" then
        reqs[#reqs + 1] = wrk.format("GET", path, { ["Authorization"] = "DPoP " .. dpop_token, ["DPoP"] = line })
      elseif line ~= "" then
        local headers = { ["Authorization"] = "Bearer " .. line }
        if body then
          headers["Content-Type"] = "application/json"
          headers["Accept"] = "application/json, text/event-stream"
        end
        reqs[#reqs + 1] = wrk.format(method, path, headers, body)
      end
    end
  elseif body then
    reqs[1] = wrk.format(method, path, { ["Content-Type"] = "application/json" }, body)
  else
    reqs[1] = wrk.format(method, path)
  end
  -- Threads start at different places in the list, so they do not send the same token together.
  cursor = (id * 997) % #reqs
  non2xx = 0
end

function request()
  cursor = cursor % #reqs + 1
  return reqs[cursor]
end

-- A benchmark of error responses measures nothing: count every status outside 2xx.
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"non2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    bad, e.connect, e.read, e.write, e.timeout))
end
