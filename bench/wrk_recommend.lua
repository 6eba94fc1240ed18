-- wrk script for POST /v1/recommend (bench/bench_serve.sh).
--
--   wrk -s bench/wrk_recommend.lua URL -- fixed
--   wrk -s bench/wrk_recommend.lua URL -- varied BODIES_FILE
--
-- fixed:  every request sends the same 5-skill body.
-- varied: every request sends the next body of BODIES_FILE (one JSON request
--         body a line), each thread starting at its own place, so a cache of
--         query embeddings in the server cannot make the figures look better
--         than they are.
-- At the end one line of figures for bench_serve.sh to read:
--   RESULT requests=N seconds=S rps=R p50_ms=X p99_ms=Y non2xx=A connect=B read=C write=D timeout=E

local FIXED = '{"skills": ["python", "sql", "docker", "kubernetes", "git"], "top_k": 10}'
local HEADERS = { ["Content-Type"] = "application/json" }

local threads = {}
local counter = 0

function setup(thread)
   thread:set("thread_no", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local mode, bodies, nbodies, pos

function init(args)
   mode = args[1] or "fixed"
   if mode == "varied" then
      local path = args[2]
      local f = path and io.open(path, "r")
      if not f then
         error("wrk_recommend.lua: varied mode needs a readable bodies file, got " .. tostring(path))
      end
      bodies = {}
      for line in f:lines() do
         if line:match("%S") then
            bodies[#bodies + 1] = wrk.format("POST", "/v1/recommend", HEADERS, line)
         end
      end
      f:close()
      nbodies = #bodies
      if nbodies == 0 then
         error("wrk_recommend.lua: no bodies in " .. path)
      end
      -- threads start far apart in the list
      pos = (thread_no or 0) * 7919 % nbodies
   elseif mode == "fixed" then
      wrk.method = "POST"
      wrk.path = "/v1/recommend"
      wrk.headers["Content-Type"] = "application/json"
      wrk.body = FIXED
      fixed_request = wrk.format()
   else
      error("wrk_recommend.lua: mode must be fixed or varied, got " .. mode)
   end
end

function request()
   if mode == "varied" then
      pos = pos + 1
      if pos > nbodies then pos = 1 end
      return bodies[pos]
   end
   return fixed_request
end

function done(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.2f p99_ms=%.2f non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000.0, latency:percentile(99) / 1000.0,
      e.status, e.connect, e.read, e.write, e.timeout))
end
