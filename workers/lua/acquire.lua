-- Take the run lock and grant a fencing token.
-- KEYS[1] lock, KEYS[2] fence counter, KEYS[3] the run's status key (for its TTL)
-- ARGV[1] owner, ARGV[2] ttl in ms
-- Reply: the new token (integer), or nil when the lock is held.
-- The token is drawn only on success, so a busy lock burns no tokens. A counter created after
-- the run ended inherits the run's retention TTL, so no key of a finished run outlives it.
if not redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[2]) then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
if token == 1 then
  local ttl = redis.call('PTTL', KEYS[3])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
end
return token
