-- Take the run lock and grant a fencing token.
-- KEYS[1] lock, KEYS[2] fence counter
-- ARGV[1] owner, ARGV[2] ttl in ms
-- Reply: the new token (integer), or nil when the lock is held.
-- The token is drawn only on success, so a busy lock burns no tokens.
if not redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[2]) then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
