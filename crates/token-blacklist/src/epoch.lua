-- Returns the store's epoch id, creating it if it is missing.
-- KEYS[1] the epoch key; KEYS[2] its settle marker (same hash tag).
-- ARGV[1] the id to create; ARGV[2] the marker's TTL in ms (a backstop: its creator
-- deletes it when the repair window has passed).
-- A missing epoch means a new deployment or a Redis that lost its data: the creator
-- also sets a marker that keeps every replica from calling itself fresh until the
-- replicas that hold revocations have had time to restore them. No TTL on the epoch
-- itself: only a loss of data removes it.
local id = redis.call('GET', KEYS[1])
if id then
  return id
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
