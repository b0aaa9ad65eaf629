-- Replace a value only if it still equals what the caller read (optimistic update).
-- KEYS[1] the key
-- ARGV[1] the value read, ARGV[2] the new value
-- Reply: 1 replaced, 0 it changed meanwhile (read again and retry), -1 the key is gone.
-- The merge itself runs in Python so the stored JSON stays canonical (cjson is not). KEEPTTL:
-- a finished run's record keeps its retention TTL when it is annotated (e.g. "published").
local current = redis.call('GET', KEYS[1])
if not current then
  return -1
end
if current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
