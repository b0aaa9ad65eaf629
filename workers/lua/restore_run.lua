-- Create a run (version 0, no documents: `create_run`) or put one back as a checkpoint left it
-- (`soakq resume`): record, status, state at its version,
-- the committed iteration documents, its place in the index and in the active runs.
-- KEYS[1] record, KEYS[2] status, KEYS[3] state, KEYS[4] version, KEYS[5] runs index (ZSET),
-- KEYS[6] runs seq, KEYS[7] active runs (SET), KEYS[8] iteration documents (HASH)
-- ARGV[1] run id, ARGV[2] record JSON, ARGV[3] status, ARGV[4] state JSON, ARGV[5] version,
-- ARGV[6], ARGV[7], ... iteration number, document JSON, ...
-- Reply: 1 restored, 0 the run already exists (nothing written).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[5])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[8], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[6]), ARGV[1])
redis.call('SADD', KEYS[7], ARGV[1])
return 1
