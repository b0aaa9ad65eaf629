-- Delete every key of a run and drop it from every index.
-- KEYS[1] runs index (ZSET), KEYS[2] active (SET), KEYS[3] finished (ZSET),
-- KEYS[4] unpublished (SET), KEYS[5..] every key of the run
-- ARGV[1] run id
-- Reply: the number of the run's keys deleted.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
local n = 0
for i = 5, #KEYS do
  n = n + redis.call('DEL', KEYS[i])
end
return n
