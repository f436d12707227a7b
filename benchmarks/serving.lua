-- wrk script of benchmarks/serving.py: random subject keys, one JSON summary line at the end.
--
--   wrk -t2 -c32 -d30s --latency -H 'Authorization: Bearer …' -s benchmarks/serving.lua URL \
--       -- KEYFILE PATH_PREFIX QUERY MODE [BATCH] [PURPOSE]
--
-- MODE "get": GET PATH_PREFIX .. key .. QUERY, one random key from KEYFILE per request.
-- MODE "batch": POST PATH_PREFIX with {"purpose": PURPOSE, "keys": [BATCH random keys]}.
-- ``sent`` counts the requests written (responses plus those still in flight when wrk stops),
-- which is what the server must have audited.

local keys, n = {}, 0
local prefix, query, mode, batch, purpose = "/", "", "get", 1000, ""
local post_headers = {}
local threads = {}
local seeds = 0
sent = 0
seed = 1
-- wrk 4 checks the request shape by calling request() once in the first thread after init;
-- that request is never written, so it is not counted.
verifying = false

function setup(thread)
   seeds = seeds + 1
   thread:set("seed", seeds * 7919 + os.time())
   thread:set("verifying", seeds == 1)
   table.insert(threads, thread)
end

function init(args)
   prefix = args[2] or "/"
   query = args[3] or ""
   mode = args[4] or "get"
   batch = tonumber(args[5] or "1000")
   purpose = args[6] or ""
   for line in io.lines(args[1]) do
      if #line > 0 then
         n = n + 1
         keys[n] = line
      end
   end
   for k, v in pairs(wrk.headers) do
      post_headers[k] = v
   end
   post_headers["Content-Type"] = "application/json"
   math.randomseed(seed)
end

function request()
   if n == 0 then
      -- wrk's main state checks the request shape before init ever ran: any request will do.
      return wrk.format("GET", prefix)
   end
   if verifying then
      verifying = false
   else
      sent = sent + 1
   end
   if mode == "batch" then
      local picked = {}
      for i = 1, batch do
         picked[i] = keys[math.random(n)]
      end
      local body = '{"purpose":"' .. purpose .. '","keys":["' .. table.concat(picked, '","') .. '"]}'
      return wrk.format("POST", prefix, post_headers, body)
   end
   return wrk.format("GET", prefix .. keys[math.random(n)] .. query)
end

function done(summary, latency, requests)
   local total = 0
   for _, t in ipairs(threads) do
      total = total + (t:get("sent") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"sent":%d,"duration_us":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,'
         .. '"p999":%d}}\n',
      summary.requests, total, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)
   ))
end
