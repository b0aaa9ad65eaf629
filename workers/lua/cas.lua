-- Fenced compare-and-set of the run state.
-- KEYS[1] lock, KEYS[2] fence_seen, KEYS[3] version, KEYS[4] state, KEYS[5] status
-- ARGV[1] "owner:token", ARGV[2] token, ARGV[3] expected version, ARGV[4] state JSON,
-- ARGV[5..] the terminal statuses
-- Reply (bulk string): COMMITTED | RUN_ENDED | STALE_LOCK | VERSION_MISMATCH | NO_RUN
-- STALE_LOCK: the lock value is not exactly "owner:token", or an equal-or-newer token has
-- already committed (the token must be >= fence_seen).
local status = redis.call('GET', KEYS[5])
if not status then
  return 'NO_RUN'
end
for i = 5, #ARGV do
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
redis.call('SET', KEYS[4], ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2])
return 'COMMITTED'
