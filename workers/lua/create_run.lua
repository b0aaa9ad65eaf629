-- Create a run if it does not exist: record, status, state, version 0, its place in the index
-- and in the active runs.
-- KEYS[1] record, KEYS[2] status, KEYS[3] state, KEYS[4] version, KEYS[5] runs index (ZSET),
-- KEYS[6] runs seq, KEYS[7] active runs (SET)
-- ARGV[1] run id, ARGV[2] record JSON, ARGV[3] status, ARGV[4] state JSON
-- Reply: 1 created, 0 it already existed (nothing written).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], 0)
-- The score is a counter, not a clock: creation order stays total even within one millisecond.
redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[6]), ARGV[1])
redis.call('SADD', KEYS[7], ARGV[1])
return 1
