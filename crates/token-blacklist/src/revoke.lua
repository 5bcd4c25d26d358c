-- Writes one revocation and announces it, atomically.
-- KEYS[1] the record's key; ARGV[1] channel; ARGV[2] record "K secs expires_ms rest".
-- A record already there is widened, never narrowed: the highest watermark and the
-- latest expiry win. PXAT takes the absolute expiry, so no clock is read here.
-- A record that widens nothing is neither re-written nor announced again (it was
-- announced when it was stored): a relay writing back what it relayed stops there.
-- Returns the record stored, or an error reply for a malformed record.
local function parse(v)
  local k, s, e, rest = string.match(v, '^(%a) (%d+) (%d+) (.*)$')
  return k, tonumber(s), tonumber(e), rest
end
local k, s, e, rest = parse(ARGV[2])
if not k then
  return redis.error_reply('malformed revocation record')
end
local old = redis.call('GET', KEYS[1])
if old then
  local ok, os, oe = parse(old)
  if ok == k then
    if os > s then s = os end
    if oe > e then e = oe end
  end
end
local rec = k .. ' ' .. string.format('%d', s) .. ' ' .. string.format('%d', e) .. ' ' .. rest
if rec == old then
  return rec
end
redis.call('SET', KEYS[1], rec, 'PXAT', string.format('%d', e))
redis.call('PUBLISH', ARGV[1], rec)
return rec
