-- Extend the lock, only for the exact holder.
-- KEYS[1] lock
-- ARGV[1] "owner:token", ARGV[2] ttl in ms
-- Reply: 1 extended, 0 not the holder (expired, released or taken by another).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
