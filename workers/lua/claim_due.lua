-- Remove and return the schedule entries due at or before now, earliest first.
-- KEYS[1] due ZSET (member "run_id|iteration", score = due epoch seconds)
-- ARGV[1] now (epoch seconds), ARGV[2] limit
-- Reply: flat array member, score, member, score, ... Atomic, so no two claimers share an entry.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
for i = 1, #items, 2 do
  redis.call('ZREM', KEYS[1], items[i])
end
return items
