-- palisade-ratelimit: block a subject until now + ARGV[1] µs; an existing later block is
-- kept. KEYS[1] is the subject's block key. ARGV[2] is now in µs, or 0 to use Redis
-- TIME (production always passes 0). ARGV[1] is at most 100 years (the client clamps
-- it), so every time stays below 2^53 µs, exact in Lua's numbers.
-- Returns the block's µs left.
local now = tonumber(ARGV[2])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local block_until = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
if current > block_until then block_until = current end
redis.call('SET', KEYS[1], string.format('%.0f', block_until), 'PX', math.ceil((block_until - now) / 1000))
return block_until - now
