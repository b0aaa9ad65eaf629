-- Write an iteration document (set-if-absent) and the new run state in one fenced step.
-- KEYS[1] lock, KEYS[2] fence_seen, KEYS[3] version, KEYS[4] state,
-- KEYS[5] iteration doc, KEYS[6] iteration index (ZSET)
-- ARGV[1] "owner:token", ARGV[2] token, ARGV[3] expected version, ARGV[4] state JSON,
-- ARGV[5] doc JSON, ARGV[6] iteration number
-- Reply (bulk string): COMMITTED | DUPLICATE | STALE_LOCK | VERSION_MISMATCH | NO_RUN
-- DUPLICATE wins over every other answer: a re-run of a committed step is a no-op.
if redis.call('EXISTS', KEYS[5]) == 1 then
  return 'DUPLICATE'
end
local token = tonumber(ARGV[2])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'STALE_LOCK'
end
if token < tonumber(redis.call('GET', KEYS[2]) or '0') then
  return 'STALE_LOCK'
end
local version = redis.call('GET', KEYS[3])
if not version then
  return 'NO_RUN'
end
if tonumber(version) ~= tonumber(ARGV[3]) then
  return 'VERSION_MISMATCH'
end
redis.call('SET', KEYS[5], ARGV[5])
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[6])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2])
return 'COMMITTED'
