-- Store a named run-level document, set-if-absent.
-- KEYS[1] documents (HASH), KEYS[2] the run's status key (for its TTL)
-- ARGV[1] name, ARGV[2] document JSON
-- Reply: 1 written, 0 it existed. A hash created after the run ended (a release gate recorded
-- late) inherits the run's retention TTL.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
if redis.call('HLEN', KEYS[1]) == 1 then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
return 1
