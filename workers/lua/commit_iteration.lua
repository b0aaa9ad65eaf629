-- Write an iteration document (set-if-absent) and the new run state in one fenced step.
-- KEYS[1] lock, KEYS[2] fence_seen, KEYS[3] version, KEYS[4] state,
-- KEYS[5] iteration documents (HASH), KEYS[6] status
-- ARGV[1] "owner:token", ARGV[2] token, ARGV[3] expected version, ARGV[4] state JSON,
-- ARGV[5] doc JSON, ARGV[6] iteration number, ARGV[7..] the terminal statuses
-- Reply (bulk string): COMMITTED | DUPLICATE | RUN_ENDED | STALE_LOCK | VERSION_MISMATCH | NO_RUN
-- DUPLICATE wins over every other answer: a re-run of a committed step is a no-op. Then a run
-- that has ended takes no more iterations, whoever holds the lock.
if redis.call('HEXISTS', KEYS[5], ARGV[6]) == 1 then
  return 'DUPLICATE'
end
local status = redis.call('GET', KEYS[6])
if not status then
  return 'NO_RUN'
end
for i = 7, #ARGV do
  if ARGV[i] == status then
    return 'RUN_ENDED'
  end
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
redis.call('HSET', KEYS[5], ARGV[6], ARGV[5])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2])
return 'COMMITTED'
