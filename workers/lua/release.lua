-- Release the lock, only for the exact holder.
-- KEYS[1] lock
-- ARGV[1] "owner:token"
-- Reply: 1 released, 0 not the holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
