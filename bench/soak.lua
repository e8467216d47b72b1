-- wrk script for bench/soak.sh: mixed traffic, one connection per thread so
-- each response pairs with the request before it. Kinds, in rotation:
--   embed   POST /v1/embed with a real photo            -> 200
--   login   POST /v1/auth/login                         -> 200
--   submit  POST /v1/jobs (a training run)              -> 202, then
--   cancel  DELETE /v1/jobs/{id} of the job just made    -> 200 (or 409 if it finished)
--   bad     hostile requests: nested JSON, bad paths,
--           wrong credentials, an over-limit login      -> their intended 4xx
--   list    GET /v1/jobs                                -> 200
-- Anything else counts as an unexpected answer; the first few are printed.
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local token, photo
-- Per-thread tallies live in globals of plain values: wrk's thread:get()
-- copies numbers and strings between Lua states, not tables.
samples = ""
nsamples = 0
local pending_cancel = nil
local step = 0
local last_kind, last_want = nil, nil
local deep = string.rep("[", 20000) .. string.rep("]", 20000)

function init(args)
  token = os.getenv("SOAK_TOKEN")
  local f = assert(io.open(os.getenv("SOAK_PHOTO"), "rb"))
  photo = f:read("*a")
  f:close()
  for _, k in ipairs({"embed", "login", "submit", "cancel", "bad", "list"}) do
    _G["ok_" .. k] = 0
    _G["un_" .. k] = 0
  end
end

local auth = function() return { ["Authorization"] = "Bearer " .. token } end

local bad_requests = {
  function() return wrk.format("POST", "/v1/auth/login", {["Content-Type"] = "application/json"}, deep), {[400] = true} end,
  function() return wrk.format("GET", "/v1/jobs/%ff", auth()), {[400] = true} end,
  function() return wrk.format("GET", "/v1/jobs/%zz", auth()), {[400] = true} end,
  function() return wrk.format("POST", "/v1/auth/login", nil, '{"username":"intruder","password":"wrong password"}'), {[401] = true, [429] = true} end,
  function() return wrk.format("POST", "/v1/embed", auth(), "plain text is not an image"), {[415] = true} end,
  function() return wrk.format("GET", "/v1/jobs", nil), {[401] = true} end,
  function() return wrk.format("POST", "/v1/jobs", auth(), '{"trainer": "nope"}'), {[400] = true} end,
}

local spec = '{"trainer": "classifier", "dataset": "fashion-mnist", "model": "small_cnn", ' ..
             '"hyper": {"epochs": 1, "batch_size": 32, "limit_train": 512, "limit_test": 128}}'

function request()
  -- A cancel follows its submission without taking a step of the mix (it
  -- used to take the "list" step, so no listing was ever sent).
  if pending_cancel then
    local id = pending_cancel
    pending_cancel = nil
    last_kind, last_want = "cancel", {[200] = true, [409] = true}
    return wrk.format("DELETE", "/v1/jobs/" .. id, auth())
  end
  step = step + 1
  local r = step % 10
  if r <= 3 then
    last_kind, last_want = "embed", {[200] = true}
    return wrk.format("POST", "/v1/embed", auth(), photo)
  elseif r == 4 then
    last_kind, last_want = "login", {[200] = true}
    return wrk.format("POST", "/v1/auth/login", nil, '{"username":"soak","password":"soak password 1"}')
  elseif r == 5 then
    last_kind, last_want = "submit", {[202] = true}
    return wrk.format("POST", "/v1/jobs", auth(), spec)
  elseif r == 6 then
    last_kind, last_want = "list", {[200] = true}
    return wrk.format("GET", "/v1/jobs", auth())
  else
    local req, want = bad_requests[(math.floor(step / 10) + r) % #bad_requests + 1]()
    last_kind, last_want = "bad", want
    return req
  end
end

function response(status, headers, body)
  if last_kind == nil then return end
  if last_want[status] then
    _G["ok_" .. last_kind] = _G["ok_" .. last_kind] + 1
  else
    _G["un_" .. last_kind] = _G["un_" .. last_kind] + 1
    if nsamples < 3 then
      nsamples = nsamples + 1
      samples = samples .. "sample: " .. last_kind .. " -> " .. status .. " "
                .. string.gsub(string.sub(body or "", 1, 160), "\n", " ") .. "\n"
    end
  end
  if last_kind == "submit" and status == 202 then
    pending_cancel = string.match(body, '"id"%s*:%s*"([^"]+)"')
  end
end

function done(summary, latency, requests)
  local kinds = {"embed", "login", "submit", "cancel", "bad", "list"}
  local ok, un = {}, {}
  for _, k in ipairs(kinds) do ok[k] = 0; un[k] = 0 end
  local all_samples = ""
  for _, t in ipairs(threads) do
    for _, k in ipairs(kinds) do
      ok[k] = ok[k] + (t:get("ok_" .. k) or 0)
      un[k] = un[k] + (t:get("un_" .. k) or 0)
    end
    if #all_samples < 2000 then all_samples = all_samples .. (t:get("samples") or "") end
  end
  local total_un = 0
  for _, k in ipairs(kinds) do
    io.write(string.format("kind=%s as_intended=%d unexpected=%d\n", k, ok[k], un[k]))
    total_un = total_un + un[k]
  end
  io.write(string.format("requests=%d socket_errors=%d timeouts=%d unexpected=%d p50_ms=%.1f p99_ms=%.1f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout, total_un, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  io.write(all_samples)
end
