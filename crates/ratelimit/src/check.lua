-- palisade-ratelimit: GCRA over one or more policies of one subject, all or nothing.
-- KEYS[1]    the subject's block key (value: blocked-until, µs)
-- KEYS[1+i]  policy i's state key (value: TAT, µs)      all keys share one hash tag
-- ARGV[1]    now in µs, or 0 to use Redis TIME (production always passes 0)
-- ARGV[2]    cost (0 = peek: answer for cost 1, change nothing)
-- ARGV[1+2i], ARGV[2+2i]   policy i's emission interval (µs) and burst
-- Returns integers only: {allowed, policy index (0 = blocked), remaining,
--                         reset_after µs, retry_after µs}
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])

local blocked = tonumber(redis.call('GET', KEYS[1]) or 0)
if blocked > now then
  return {0, 0, 0, blocked - now, blocked - now}
end

-- floor(a / b) for non-negative integers below 2^53, exact despite float division.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 end
  return q
end

local unit = math.max(cost, 1)
local new_tats = {}
local deny_i, deny_rem, deny_reset, deny_retry = 0, 0, 0, -1
local best_i, best_rem, best_reset = 0, -1, 0
for i = 1, #KEYS - 1 do
  local interval = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[1 + i]) or 0)
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
if deny_i > 0 then
  return {0, deny_i, deny_rem, deny_reset, deny_retry}
end
if cost > 0 then
  for i = 1, #KEYS - 1 do
    local ttl_ms = math.ceil((new_tats[i] - now) / 1000)
    redis.call('SET', KEYS[1 + i], string.format('%.0f', new_tats[i]), 'PX', ttl_ms)
  end
end
return {1, best_i, best_rem, best_reset, 0}
