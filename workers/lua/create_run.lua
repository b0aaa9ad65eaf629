-- Create a run if it does not exist: record, state, version 0 and its place in the index.
-- KEYS[1] record, KEYS[2] state, KEYS[3] version, KEYS[4] runs index (ZSET), KEYS[5] runs seq
-- ARGV[1] run id, ARGV[2] record JSON, ARGV[3] state JSON
-- Reply: 1 created, 0 it already existed (nothing written).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], 0)
-- The score is a counter, not a clock: creation order stays total even within one millisecond.
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), ARGV[1])
return 1
