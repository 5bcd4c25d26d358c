-- Renews or releases a lease (the repair lock, a settle marker) only if we hold it.
-- KEYS[1] the lease; ARGV[1] the holder's token; ARGV[2] new lease in ms, or 0 to release.
-- Returns 1 if we held it, 0 if not (it expired, or someone else holds it).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
