-- Write an iteration document (set-if-absent) and the new run state in one fenced step, release
-- the lock, and (optionally) replace the run record if it is still what the caller read.
-- KEYS[1] lock, KEYS[2] fence_seen, KEYS[3] version, KEYS[4] state,
-- KEYS[5] iteration documents (HASH), KEYS[6] status, KEYS[7] record
-- ARGV[1] "owner:token", ARGV[2] token, ARGV[3] expected version, ARGV[4] state JSON,
-- ARGV[5] doc JSON, ARGV[6] iteration number, ARGV[7] the record as read ('' = leave the record
-- alone), ARGV[8] the new record, ARGV[9..] the terminal statuses
-- Reply (bulk string): COMMITTED | COMMITTED_RECORD_CHANGED | DUPLICATE | RUN_ENDED |
-- STALE_LOCK | VERSION_MISMATCH | NO_RUN
-- DUPLICATE wins over every other answer: a re-run of a committed step is a no-op. Then a run
-- that has ended takes no more iterations, whoever holds the lock. One MGET reads every guard
-- and one MSET writes state, version and fence together: an iteration costs few commands.
if redis.call('HEXISTS', KEYS[5], ARGV[6]) == 1 then
  return 'DUPLICATE'
end
local cur = redis.call('MGET', KEYS[6], KEYS[1], KEYS[2], KEYS[3], KEYS[7])
local status, holder, seen, version, record = cur[1], cur[2], cur[3], cur[4], cur[5]
if not status then
  return 'NO_RUN'
end
for i = 9, #ARGV do
  if ARGV[i] == status then
    return 'RUN_ENDED'
  end
end
local token = tonumber(ARGV[2])
if holder ~= ARGV[1] or token < tonumber(seen or '0') then
  return 'STALE_LOCK'
end
if not version then
  return 'NO_RUN'
end
if tonumber(version) ~= tonumber(ARGV[3]) then
  return 'VERSION_MISMATCH'
end
redis.call('HSET', KEYS[5], ARGV[6], ARGV[5])
local next_version = tostring(tonumber(version) + 1)
local reply = 'COMMITTED'
if ARGV[7] == '' then
  redis.call('MSET', KEYS[4], ARGV[4], KEYS[3], next_version, KEYS[2], ARGV[2])
elseif record == ARGV[7] then
  redis.call('MSET', KEYS[4], ARGV[4], KEYS[3], next_version, KEYS[2], ARGV[2], KEYS[7], ARGV[8])
else
  redis.call('MSET', KEYS[4], ARGV[4], KEYS[3], next_version, KEYS[2], ARGV[2])
  reply = 'COMMITTED_RECORD_CHANGED'
end
redis.call('DEL', KEYS[1])
return reply
