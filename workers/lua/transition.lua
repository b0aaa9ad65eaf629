-- Move a run to a new status if the transition table allows it from the status it has now.
-- KEYS[1] record, KEYS[2] status, KEYS[3] version, KEYS[4] active runs (SET),
-- KEYS[5] finished runs (ZSET by finish time), KEYS[6] unpublished runs (SET),
-- KEYS[7..] every key of the run (given a TTL when the run ends)
-- ARGV[1] target status, ARGV[2] the record as the caller read it, ARGV[3] the state version
-- the caller read, ARGV[4] the new record (target status and changes merged in, canonical JSON),
-- ARGV[5] "1" when the target is terminal, ARGV[6] retention in seconds, ARGV[7] run id,
-- ARGV[8] now (epoch s), ARGV[9..] the statuses the target may be entered from
-- (soakq.states.allowed_from: the table lives in Python, once)
-- Reply: {outcome, status now}; outcome APPLIED | ALREADY | REFUSED | RETRY | NO_RUN.
-- RETRY: the record or the state moved since the caller read them; read again and retry.
local current = redis.call('GET', KEYS[2])
if not current then
  return {'NO_RUN', ''}
end
if current == ARGV[1] then
  return {'ALREADY', current}
end
local allowed = false
for i = 9, #ARGV do
  if ARGV[i] == current then
    allowed = true
    break
  end
end
if not allowed then
  return {'REFUSED', current}
end
if redis.call('GET', KEYS[1]) ~= ARGV[2] or redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return {'RETRY', current}
end
redis.call('SET', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[1])
if ARGV[5] == '1' then
  redis.call('SREM', KEYS[4], ARGV[7])
  redis.call('ZADD', KEYS[5], ARGV[8], ARGV[7])
  redis.call('SADD', KEYS[6], ARGV[7])
  for i = 7, #KEYS do
    redis.call('EXPIRE', KEYS[i], ARGV[6])
  end
end
return {'APPLIED', ARGV[1]}
