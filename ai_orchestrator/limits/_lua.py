"""The shared limiter's rules as one Redis script: ``Bucket``'s arithmetic, run
atomically where every worker sees the same key and the same clock.

It mirrors ``_bucket.py`` line for line (``tests/unit/test_limits_redis.py`` runs
both on the same operations and compares them), plus the line of waiting calls,
which in one process lives in memory. Redis's own clock serves every worker, so
workers whose clocks disagree still agree on what has refilled.

KEYS: state (hash), leases (zset: lease -> expiry), held (hash: lease -> tokens),
line (zset: waiter -> priority, then arrival), alive (zset: waiter -> expiry),
sizes (hash: waiter -> tokens).
ARGV: op, now ("" = the server's clock), PROBE_SECONDS, ARRIVAL_LAG, idle seconds
(keys expire after that long unused), then the op's own arguments.
"""

from __future__ import annotations

SCRIPT = r"""
local state, leases, held, line, alive, sizes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local PROBE, LAG, IDLE = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

local function f(x) return string.format('%.17g', x) end
local function opt(text) if text == nil or text == '' then return nil end return tonumber(text) end

local b = {}
local raw = redis.call('HGETALL', state)
for i = 1, #raw, 2 do b[raw[i]] = raw[i + 1] end
local tpm, rpm = opt(b.tpm), opt(b.rpm)
local tokens, requests = opt(b.tokens) or 0, opt(b.requests) or 0
local updated = opt(b.updated) or now
local paused_until, probe_until = opt(b.paused_until) or 0, opt(b.probe_until) or 0
local probe_lease = b.probe_lease or ''
local headerless, refund = b.headerless == '1', b.refund == '1'

local function unknown() return tpm == nil and rpm == nil and not headerless end
local function end_probe() probe_until, probe_lease = 0, '' end

local function refill()
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', f(now))) do
    redis.call('ZREM', leases, id)  -- its worker died: the provider counted it long ago
    redis.call('HDEL', held, id)
  end
  local elapsed = math.max(0, now - updated)
  if tpm then tokens = math.min(tpm, tokens + elapsed * tpm / 60) end
  if rpm then requests = math.min(rpm, requests + elapsed * rpm / 60) end
  updated = now
end

local function configure(ctpm, crpm)
  if ctpm and tpm == nil then tpm, tokens = ctpm, ctpm end
  if crpm and rpm == nil then rpm, requests = crpm, crpm end
end

-- Seconds until `need_tokens` and `need_requests` fit; only the first in line may
-- take a call larger than the whole limit (it waits for a full bucket).
local function wait_for(need_tokens, need_requests, first)
  local w = paused_until - now
  if unknown() then w = math.max(w, probe_until - now) end
  if tpm then
    local target = need_tokens + tpm / 60 * LAG
    if first then target = math.min(target, tpm) end
    if tokens < target then w = math.max(w, (target - tokens) * 60 / tpm) end
  end
  if rpm then
    local target = need_requests + rpm / 60 * LAG
    if first then target = math.min(target, rpm) end
    if requests < target then w = math.max(w, (target - requests) * 60 / rpm) end
  end
  return math.max(0, w)
end

local function reserve(lease_id, n, lease_seconds)
  if unknown() and probe_until <= now then probe_until, probe_lease = now + PROBE, lease_id end
  if tpm then tokens = tokens - n end
  if rpm then requests = requests - 1 end
  redis.call('ZADD', leases, f(now + lease_seconds), lease_id)
  redis.call('HSET', held, lease_id, n)
end

local result = 0
if op == 'acquire' then
  -- waiter, priority, tokens, lease id, lease seconds, configured tpm, rpm, refund, waiter ttl
  local waiter, priority, n = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
  if b.updated == nil then refund = ARGV[13] == '1' end
  refill()
  configure(opt(ARGV[11]), opt(ARGV[12]))
  if not redis.call('ZSCORE', line, waiter) then
    redis.call('ZADD', line, f(priority * 1e13 + math.floor(now * 1000)), waiter)
  end
  redis.call('ZADD', alive, f(now + tonumber(ARGV[14])), waiter)
  redis.call('HSET', sizes, waiter, n)
  -- A waiter whose worker died leaves the line when it stops calling back.
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', '(' .. f(now))) do
    redis.call('ZREM', line, gone)
    redis.call('ZREM', alive, gone)
    redis.call('HDEL', sizes, gone)
  end
  local rank = redis.call('ZRANK', line, waiter)
  local w
  if rank == 0 then
    w = wait_for(n, 1, true)
  elseif unknown() then
    w = math.max(0.05, probe_until - now)  -- only the first in line probes
  else
    -- A call behind others goes now only if the key holds it and all ahead of it.
    local ahead = 0
    for _, other in ipairs(redis.call('ZRANGE', line, 0, rank - 1)) do
      ahead = ahead + (tonumber(redis.call('HGET', sizes, other)) or 0)
    end
    w = wait_for(ahead + n, rank + 1, false)
  end
  if w <= 0 then
    reserve(ARGV[9], n, tonumber(ARGV[10]))
    redis.call('ZREM', line, waiter)
    redis.call('ZREM', alive, waiter)
    redis.call('HDEL', sizes, waiter)
    result = {1, '0', rank}
  else
    result = {0, f(w), rank}
  end
elseif op == 'leave' then
  redis.call('ZREM', line, ARGV[6])
  redis.call('ZREM', alive, ARGV[6])
  redis.call('HDEL', sizes, ARGV[6])
elseif op == 'settle' then
  -- lease id, tokens used ("" = unknown)
  refill()
  local lease_id, used = ARGV[6], opt(ARGV[7])
  local h = opt(redis.call('HGET', held, lease_id) or nil)
  redis.call('ZREM', leases, lease_id)
  redis.call('HDEL', held, lease_id)
  if lease_id == probe_lease then end_probe() end
  if h and used and refund and tpm then tokens = math.min(tpm, tokens + math.max(0, h - used)) end
elseif op == 'observe' then
  -- opened, limit tokens, remaining tokens, limit requests, remaining requests
  refill()
  local lt, rt, lr, rr = opt(ARGV[7]), opt(ARGV[8]), opt(ARGV[9]), opt(ARGV[10])
  if lt == nil and lr == nil then
    if ARGV[6] == '1' and unknown() then
      headerless = true
      end_probe()
    end
  else
    end_probe()
    if lt and lt ~= 0 then
      if tpm == nil then tokens = lt end
      tpm = lt
    end
    if rt and tpm then tokens = math.min(tokens, rt) end
    if lr and lr ~= 0 then
      if rpm == nil then requests = lr end
      rpm = lr
    end
    if rr and rpm then requests = math.min(requests, rr) end
  end
elseif op == 'pause' then
  paused_until = math.max(paused_until, now + tonumber(ARGV[6]))
elseif op == 'state' then
  refill()
end

if op == 'leave' then return 0 end
redis.call('HSET', state,
  'tpm', tpm and f(tpm) or '', 'rpm', rpm and f(rpm) or '',
  'tokens', f(tokens), 'requests', f(requests), 'updated', f(updated),
  'paused_until', f(paused_until), 'probe_until', f(probe_until), 'probe_lease', probe_lease,
  'headerless', headerless and '1' or '0', 'refund', refund and '1' or '0')
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], math.floor(IDLE * 1000)) end
if op == 'state' then return redis.call('HGETALL', state) end
return result
"""
