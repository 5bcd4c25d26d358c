-- palisade-ratelimit: GCRA over one or more policies of one subject, all or nothing,
-- with detection of lost Redis data.
-- KEYS[1]    the subject's block key (value: blocked-until, µs)
-- KEYS[2]    the epoch key of the subject's hash slot (value: "<id> <lost_at µs>")
-- KEYS[2+i]  policy i's state key (value: TAT, µs)      all keys share one hash slot
-- ARGV[1]    now in µs, or 0 to use Redis TIME (production always passes 0)
-- ARGV[2]    cost (0 = peek: answer for cost 1, change nothing)
-- ARGV[3]    the epoch id the client knows (0 = none yet)
-- ARGV[4]    the id to give an epoch this call creates (unique per call)
-- ARGV[5]    1: a policy whose state is uncertain denies the request (Closed);
--            0: it is skipped, and the client decides it by its failure policy
-- ARGV[4+2i], ARGV[5+2i]   policy i's emission interval (µs) and burst
-- Returns integers only: {allowed, policy index (0 = blocked, -1 = no policy on
--   Redis decided), remaining, reset_after µs, retry_after µs, epoch id,
--   then the indexes of the policies whose state is uncertain}
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])

-- The epoch: created when a limiter connects. Missing, or replaced since this client
-- learnt it, means Redis lost data; lost_at records when that was first seen, so every
-- instance agrees on it.
local known = tonumber(ARGV[3])
local id, lost
local epoch = redis.call('GET', KEYS[2])
if epoch then
  local a, b = string.match(epoch, '^(%d+) (%d+)$')
  id, lost = tonumber(a), tonumber(b)
end
if not id then
  -- A client that knew no epoch has nothing to compare with: a first start.
  id, lost = tonumber(ARGV[4]), 0
  if known ~= 0 then lost = now end
  redis.call('SET', KEYS[2], string.format('%.0f %.0f', id, lost))
elseif known ~= 0 and id ~= known and lost == 0 then
  -- Re-created by a client that knew none (it connected after the loss).
  lost = now
  redis.call('SET', KEYS[2], string.format('%.0f %.0f', id, lost))
end

local blocked = tonumber(redis.call('GET', KEYS[1]) or 0)
if blocked > now then
  return {0, 0, 0, blocked - now, blocked - now, id}
end

-- floor(a / b) for non-negative integers below 2^53, exact despite float division.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 end
  return q
end

-- A policy's state is uncertain for one burst window after the loss: a lost TAT
-- was at most lost_at + burst·interval, so from then on every lost state equals a
-- fresh one.
local uncertain, wait = {}, 0
local unit = math.max(cost, 1)
local new_tats = {}
local deny_i, deny_rem, deny_reset, deny_retry = 0, 0, 0, -1
local best_i, best_rem, best_reset = -1, -1, 0
for i = 1, #KEYS - 2 do
  local interval = tonumber(ARGV[4 + 2 * i])
  local burst = tonumber(ARGV[5 + 2 * i])
  local window_end = lost + burst * interval
  if lost > 0 and now < window_end then
    uncertain[#uncertain + 1] = i
    if window_end - now > wait then wait = window_end - now end
  else
    local tat = tonumber(redis.call('GET', KEYS[2 + i]) or 0)
    local base = math.max(tat, now)
    local limit = now + burst * interval
    local new_tat = base + unit * interval
    if new_tat <= limit then
      local after = new_tat
      if cost == 0 then after = base end
      local rem = idiv(limit - after, interval)
      new_tats[i] = new_tat
      if best_rem < 0 or rem < best_rem then
        best_i, best_rem, best_reset = i, rem, after - now
      end
    elseif new_tat - limit > deny_retry then
      deny_i, deny_rem, deny_reset, deny_retry = i, idiv(math.max(limit - base, 0), interval), base - now, new_tat - limit
    end
  end
end
if #uncertain > 0 and ARGV[5] == '1' then
  return {0, -1, 0, wait, wait, id, unpack(uncertain)}
end
if deny_i > 0 then
  return {0, deny_i, deny_rem, deny_reset, deny_retry, id, unpack(uncertain)}
end
if cost > 0 then
  for i, new_tat in pairs(new_tats) do
    local ttl_ms = math.ceil((new_tat - now) / 1000)
    redis.call('SET', KEYS[2 + i], string.format('%.0f', new_tat), 'PX', ttl_ms)
  end
end
return {1, best_i, math.max(best_rem, 0), best_reset, 0, id, unpack(uncertain)}
