-- palisade-ratelimit: block a subject until now + ARGV[1] µs (Redis TIME); an existing
-- later block is kept. KEYS[1] is the subject's block key. Returns the block's µs left.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local block_until = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
if current > block_until then block_until = current end
redis.call('SET', KEYS[1], string.format('%.0f', block_until), 'PX', math.ceil((block_until - now) / 1000))
return block_until - now
